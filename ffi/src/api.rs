//! The configuration and pipeline functions of the C ABI.

use std::os::raw::c_char;
use std::time::Duration;

use otlpflow::{Compression, Pipeline, PipelineBuilder, Policy, RecordError, Scope, Stats};

use crate::ffi_boundary;
use crate::otlpflow_result as R;
use crate::otlpflow_result;
use crate::ptr::{
    free_handle, into_handle, mut_of, otlpflow_str, ref_of, slice_of, str_of, write_out,
};
use crate::span::{
    convert, otlpflow_span, otlpflow_value, otlpflow_value_kind, EventPool, KvPool, LinkPool,
    ValuePool,
};

/// Pipeline settings, built up with setters and handed to
/// `otlpflow_pipeline_start`. A `Box` underneath; not thread-safe: use one
/// config from one thread at a time. Free it with `otlpflow_config_free`.
pub struct otlpflow_config {
    builder: PipelineBuilder,
    error: String,
}

/// A running pipeline. An `Arc`-backed engine underneath; every function
/// taking a `const otlpflow_pipeline *` may be called from any number of
/// threads at once. Free it with `otlpflow_pipeline_free` (which shuts it
/// down first if needed) once no thread uses it any more.
pub struct otlpflow_pipeline {
    pub(crate) pipeline: Pipeline,
}

/// An instrumentation scope of a pipeline: a plain value, copy it freely.
/// Made by `otlpflow_pipeline_scope`; a scope of another pipeline (or
/// garbage) is refused with `OTLPFLOW_RESULT_INVALID_SCOPE`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_scope {
    /// Scope number inside its pipeline.
    pub id: u32,
    /// The pipeline it belongs to.
    pub pipeline: u64,
}

/// Counters of a pipeline (see the Rust `Stats` for their meaning). The
/// identities `offered = accepted + dropped_*` and
/// `accepted = exported + failed + rejected + in_flight` hold.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct otlpflow_stats {
    /// Records the host tried to record.
    pub offered: u64,
    /// Records taken into a ring.
    pub accepted: u64,
    /// Refused: ring full.
    pub dropped_full: u64,
    /// Refused: larger than a ring record may be.
    pub dropped_too_large: u64,
    /// Refused: offered after shutdown began.
    pub dropped_shutdown: u64,
    /// Refused: invalid input.
    pub dropped_invalid: u64,
    /// Refused: over the ingest rate limit.
    pub dropped_rate_limited: u64,
    /// Acknowledged by the receiver.
    pub exported: u64,
    /// Failed for good (including the two below).
    pub failed: u64,
    /// Of `failed`: still unsent at shutdown's deadline.
    pub failed_shutdown: u64,
    /// Of `failed`: in flight in the parent at a fork (the parent sends them).
    pub failed_fork: u64,
    /// Of `failed`: retries ran out on a retryable error.
    pub failed_exhausted: u64,
    /// Of `failed`: a permanent error (refused by the receiver, untrusted
    /// certificate, malformed response).
    pub failed_permanent: u64,
    /// Rejected by the server (partial success).
    pub rejected: u64,
    /// Accepted and not yet exported, failed or rejected.
    pub in_flight: u64,
    /// Export requests sent, retries included.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// Failed request attempts.
    pub request_errors: u64,
    /// Uncompressed OTLP bytes exported.
    pub bytes_raw: u64,
    /// Bytes on the wire.
    pub bytes_wire: u64,
    /// Export round-trip latency, median, nanoseconds.
    pub export_latency_p50_ns: u64,
    /// 99th percentile.
    pub export_latency_p99_ns: u64,
    /// Largest.
    pub export_latency_max_ns: u64,
    /// Refused: over the memory budget.
    pub dropped_memory: u64,
    /// Of `failed`: waiting for a retry, dropped for newer data.
    pub failed_evicted: u64,
    /// The limit on requests in flight, summed over workers.
    pub concurrency_limit: u64,
    /// The batch target in records, averaged over workers.
    pub batch_target: u64,
    /// Bytes held against the memory budget now.
    pub memory_used: u64,
    /// The most ever held against the memory budget.
    pub memory_peak: u64,
    /// Times a circuit breaker opened.
    pub breaker_opened: u64,
    /// End-to-end latency (commit to acknowledgement, sampled), median, ns.
    pub e2e_latency_p50_ns: u64,
    /// 99th percentile.
    pub e2e_latency_p99_ns: u64,
    /// The fullest shard ring, percent.
    pub ring_fill_max_pct: u64,
}

impl From<Stats> for otlpflow_stats {
    fn from(s: Stats) -> Self {
        otlpflow_stats {
            offered: s.offered,
            accepted: s.accepted,
            dropped_full: s.dropped.full,
            dropped_too_large: s.dropped.too_large,
            dropped_shutdown: s.dropped.shutdown,
            dropped_invalid: s.dropped.invalid,
            dropped_rate_limited: s.dropped.rate_limited,
            exported: s.exported,
            failed: s.failed,
            failed_shutdown: s.failed_shutdown,
            failed_fork: s.failed_fork,
            failed_exhausted: s.failed_exhausted,
            failed_permanent: s.failed_permanent,
            rejected: s.rejected,
            in_flight: s.in_flight,
            requests: s.requests,
            retries: s.retries,
            request_errors: s.request_errors,
            bytes_raw: s.bytes_raw,
            bytes_wire: s.bytes_wire,
            export_latency_p50_ns: s.export_latency.p50_ns,
            export_latency_p99_ns: s.export_latency.p99_ns,
            export_latency_max_ns: s.export_latency.max_ns,
            dropped_memory: s.dropped.memory,
            failed_evicted: s.failed_evicted,
            concurrency_limit: s.concurrency_limit,
            batch_target: s.batch_target,
            memory_used: s.memory_used,
            memory_peak: s.memory_peak,
            breaker_opened: s.breaker_opened,
            e2e_latency_p50_ns: s.e2e_latency.p50_ns,
            e2e_latency_p99_ns: s.e2e_latency.p99_ns,
            ring_fill_max_pct: s.ring_fill_max_pct,
        }
    }
}

/// Runs `f` on the config's builder.
///
/// # Safety
/// `config` must be NULL or a live config.
unsafe fn with_builder(
    config: *mut otlpflow_config,
    f: impl FnOnce(PipelineBuilder) -> Result<PipelineBuilder, otlpflow_result>,
) -> otlpflow_result {
    // SAFETY: forwarded to the caller's contract.
    let cfg = match unsafe { mut_of(config) } {
        Ok(c) => c,
        Err(e) => return e,
    };
    let builder = std::mem::take(&mut cfg.builder);
    let saved = builder.clone();
    match f(builder) {
        Ok(b) => {
            cfg.builder = b;
            R::Ok
        }
        Err(e) => {
            cfg.builder = saved;
            e
        }
    }
}

/// Makes a config with the defaults (endpoint `http://localhost:4317`,
/// OTLP/gRPC, no compression, `DROP_NEWEST`). Writes it to `*out`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_new(out: *mut *mut otlpflow_config) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        let handle = into_handle(otlpflow_config {
            builder: PipelineBuilder::default(),
            error: String::new(),
        });
        // SAFETY: `out` is NULL or writable, per this function's contract.
        match unsafe { write_out(out, handle) } {
            Ok(()) => R::Ok,
            Err(e) => {
                // SAFETY: just made by into_handle.
                unsafe { free_handle(handle) };
                e
            }
        }
    })
}

/// Frees a config. NULL and a second free are ignored.
#[no_mangle]
pub extern "C" fn otlpflow_config_free(config: *mut otlpflow_config) {
    ffi_boundary!((), {
        // SAFETY: NULL or a handle from otlpflow_config_new.
        unsafe { free_handle(config) }
    })
}

/// Applies the standard `OTEL_*` environment variables (endpoint, headers,
/// compression, timeout, protocol, service name, resource attributes). Call
/// it before the setters you want to win over the environment. A malformed
/// variable returns `OTLPFLOW_RESULT_INVALID_CONFIG`; the message naming it
/// is available from `otlpflow_config_error`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_apply_env(config: *mut otlpflow_config) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        let mut message = None;
        // SAFETY: NULL or a live config.
        let r = unsafe {
            with_builder(config, |b| {
                b.apply_env().map_err(|e| {
                    message = Some(e.to_string());
                    R::InvalidConfig
                })
            })
        };
        if let Some(m) = message {
            // SAFETY: the call above succeeded in borrowing it.
            if let Ok(cfg) = unsafe { mut_of(config) } {
                cfg.error = m;
            }
        }
        r
    })
}

/// Sets a string-valued setting.
fn set_str(
    config: *mut otlpflow_config,
    value: otlpflow_str,
    f: impl FnOnce(PipelineBuilder, String) -> PipelineBuilder,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: `value` is valid for reads of its length, per the contract
        // of every string argument.
        let v = match unsafe { str_of(value) } {
            Ok(v) => v.to_owned(),
            Err(e) => return e,
        };
        // SAFETY: NULL or a live config.
        unsafe { with_builder(config, |b| Ok(f(b, v))) }
    })
}

/// Sets a setting that needs no pointer but the config's.
fn set(
    config: *mut otlpflow_config,
    f: impl FnOnce(PipelineBuilder) -> Result<PipelineBuilder, otlpflow_result>,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live config.
        unsafe { with_builder(config, f) }
    })
}

/// The OTLP/gRPC endpoint, e.g. `http://collector:4317` (checked at start).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_endpoint(
    config: *mut otlpflow_config,
    value: otlpflow_str,
) -> otlpflow_result {
    set_str(config, value, |b, v| b.endpoint(v))
}

/// The `service.name` resource attribute.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_service_name(
    config: *mut otlpflow_config,
    value: otlpflow_str,
) -> otlpflow_result {
    set_str(config, value, |b, v| b.service_name(v))
}

/// The `service.version` resource attribute.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_service_version(
    config: *mut otlpflow_config,
    value: otlpflow_str,
) -> otlpflow_result {
    set_str(config, value, |b, v| b.service_version(v))
}

/// Compression: 0 none (the default), 1 gzip, 2 zstd.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_compression(
    config: *mut otlpflow_config,
    compression: u32,
) -> otlpflow_result {
    set(config, |b| match compression {
        0 => Ok(b.compression(Compression::None)),
        1 => Ok(b.compression(Compression::Gzip)),
        2 => Ok(b.compression(Compression::Zstd)),
        _ => Err(R::InvalidArgument),
    })
}

/// Number of shard rings (0 = one per CPU, the default).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_shards(
    config: *mut otlpflow_config,
    shards: usize,
) -> otlpflow_result {
    set(config, |b| {
        Ok(if shards == 0 { b } else { b.shards(shards) })
    })
}

/// Number of worker threads (0 = one per CPU, the default).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_workers(
    config: *mut otlpflow_config,
    workers: usize,
) -> otlpflow_result {
    set(config, |b| {
        Ok(if workers == 0 { b } else { b.workers(workers) })
    })
}

/// Bytes per shard ring (a power of two from 4 KiB; checked at start).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_ring_bytes(
    config: *mut otlpflow_config,
    bytes: usize,
) -> otlpflow_result {
    set(config, |b| Ok(b.ring_bytes(bytes)))
}

/// Records per batch (default 512).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_max_batch_items(
    config: *mut otlpflow_config,
    items: usize,
) -> otlpflow_result {
    set(config, |b| Ok(b.max_batch_items(items)))
}

/// How long a non-empty batch waits for more, in milliseconds (default 100).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_linger_ms(
    config: *mut otlpflow_config,
    ms: u64,
) -> otlpflow_result {
    set(config, |b| Ok(b.linger(Duration::from_millis(ms))))
}

/// Requests in flight per worker (default 4).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_max_in_flight(
    config: *mut otlpflow_config,
    requests: usize,
) -> otlpflow_result {
    set(config, |b| Ok(b.max_in_flight(requests)))
}

/// Timeout of one export request, in milliseconds (default 10000).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_request_timeout_ms(
    config: *mut otlpflow_config,
    ms: u64,
) -> otlpflow_result {
    set(config, |b| Ok(b.request_timeout(Duration::from_millis(ms))))
}

/// What a full ring does: `policy` 0 refuses at once (`DROP_NEWEST`, the
/// default), 1 blocks the recording thread up to `max_wait_ms` (`BLOCK`).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_policy(
    config: *mut otlpflow_config,
    policy: u32,
    max_wait_ms: u64,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live config.
        unsafe {
            with_builder(config, |b| match policy {
                0 => Ok(b.policy(Policy::DropNewest)),
                1 => Ok(b.policy(Policy::Block {
                    max_wait: Duration::from_millis(max_wait_ms),
                })),
                _ => Err(R::InvalidArgument),
            })
        }
    })
}

/// Caps the bytes records may hold in the pipeline at once (rings, batches,
/// requests in flight or waiting to retry); over it the policy applies and
/// refusals return `OTLPFLOW_RESULT_MEMORY`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_memory_budget(
    config: *mut otlpflow_config,
    bytes: u64,
) -> otlpflow_result {
    set(config, |b| Ok(b.memory_budget(bytes)))
}

/// Adaptive request concurrency per worker between `min` and `max`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_adaptive_concurrency(
    config: *mut otlpflow_config,
    min: usize,
    max: usize,
) -> otlpflow_result {
    set(config, |b| Ok(b.adaptive_concurrency(min, max)))
}

/// Ingest limit: at most `per_second` records per second, bursts of `burst`;
/// over it, records are refused with `OTLPFLOW_RESULT_RATE_LIMITED`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_rate_limit(
    config: *mut otlpflow_config,
    per_second: f64,
    burst: u64,
) -> otlpflow_result {
    set(config, |b| Ok(b.rate_limit(per_second, burst)))
}

/// Egress pacing: at most `per_second` bytes per second on the wire, bursts
/// of `burst` bytes; requests wait, none is dropped.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_egress_byte_rate(
    config: *mut otlpflow_config,
    per_second: f64,
    burst: u64,
) -> otlpflow_result {
    set(config, |b| Ok(b.egress_byte_rate(per_second, burst)))
}

/// Adds a header sent with every export (an API key, say). Its value is
/// never logged.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_add_header(
    config: *mut otlpflow_config,
    name: otlpflow_str,
    value: otlpflow_str,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: string arguments are valid for reads of their length.
        let (n, v) = match unsafe { (str_of(name), str_of(value)) } {
            (Ok(n), Ok(v)) => (n.to_owned(), v.to_owned()),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        // SAFETY: NULL or a live config.
        unsafe { with_builder(config, |b| Ok(b.header(n, v))) }
    })
}

/// Adds a resource attribute with a scalar value (string, bool, int,
/// double or bytes).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_add_resource_attribute(
    config: *mut otlpflow_config,
    key: otlpflow_str,
    value: *const otlpflow_value,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: argument pointers are valid per the contract.
        let (k, v) = match unsafe { (str_of(key), ref_of(value)) } {
            (Ok(k), Ok(v)) => (k.to_owned(), v),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let owned = match v.kind {
            x if x == otlpflow_value_kind::Str as u32 => {
                // SAFETY: as above.
                match unsafe { str_of(v.str) } {
                    Ok(s) => otlpflow::OwnedValue::Str(s.to_owned()),
                    Err(e) => return e,
                }
            }
            x if x == otlpflow_value_kind::Bool as u32 => otlpflow::OwnedValue::Bool(v.boolean),
            x if x == otlpflow_value_kind::I64 as u32 => otlpflow::OwnedValue::I64(v.i64),
            x if x == otlpflow_value_kind::F64 as u32 => otlpflow::OwnedValue::F64(v.f64),
            x if x == otlpflow_value_kind::Bytes as u32 => {
                // SAFETY: as above.
                match unsafe { slice_of(v.str.ptr.cast::<u8>(), v.str.len) } {
                    Ok(b) => otlpflow::OwnedValue::Bytes(b.to_vec()),
                    Err(e) => return e,
                }
            }
            _ => return R::InvalidArgument,
        };
        if k.is_empty() {
            return R::InvalidArgument;
        }
        // SAFETY: NULL or a live config.
        unsafe { with_builder(config, |b| Ok(b.resource_attribute(k, owned))) }
    })
}

/// Copies `text` into `buf` (NUL-terminated) and its length (without the
/// NUL) into `*out_len`. With too small a buffer nothing but `*out_len` is
/// written and `OTLPFLOW_RESULT_BUFFER_TOO_SMALL` returned.
///
/// # Safety
/// `buf` NULL or writable for `cap` bytes; `out_len` NULL or writable.
unsafe fn copy_text(
    text: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> otlpflow_result {
    // SAFETY: forwarded.
    if let Err(e) = unsafe { write_out(out_len, text.len()) } {
        return e;
    }
    if cap < text.len() + 1 {
        return R::BufferTooSmall;
    }
    if buf.is_null() {
        return R::NullArgument;
    }
    // SAFETY: `buf` is writable for `cap >= len + 1` bytes; the regions do
    // not overlap (one is ours).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    R::Ok
}

/// The message of the config's last failure (an empty string if none).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_error(
    config: *const otlpflow_config,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live config.
        match unsafe { ref_of(config) } {
            // SAFETY: buffer arguments per the contract.
            Ok(cfg) => unsafe { copy_text(&cfg.error, buf, cap, out_len) },
            Err(e) => e,
        }
    })
}

/// Validates the config and starts a pipeline, written to `*out`. An
/// invalid setting returns `OTLPFLOW_RESULT_INVALID_CONFIG` and keeps the
/// message naming it for `otlpflow_config_error`. The config stays the
/// caller's (free it when done; the pipeline does not need it).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_start(
    config: *mut otlpflow_config,
    out: *mut *mut otlpflow_pipeline,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live config.
        let cfg = match unsafe { mut_of(config) } {
            Ok(c) => c,
            Err(e) => return e,
        };
        if out.is_null() {
            return R::NullArgument;
        }
        match cfg.builder.clone().start() {
            Ok(pipeline) => {
                cfg.error.clear();
                let handle = into_handle(otlpflow_pipeline { pipeline });
                // SAFETY: checked non-NULL above; writable per the contract.
                let _ = unsafe { write_out(out, handle) };
                R::Ok
            }
            Err(e) => {
                cfg.error = e.to_string();
                if e.is_config() {
                    R::InvalidConfig
                } else {
                    R::Panic
                }
            }
        }
    })
}

/// Frees a pipeline, shutting it down first (flushing for up to 5 s) if
/// `otlpflow_pipeline_shutdown` was not called. NULL and a second free are
/// ignored. No other thread may be using the pipeline.
#[no_mangle]
pub extern "C" fn otlpflow_pipeline_free(pipeline: *mut otlpflow_pipeline) {
    ffi_boundary!((), {
        // SAFETY: NULL or a handle from otlpflow_pipeline_start.
        unsafe { free_handle(pipeline) }
    })
}

/// Registers (or finds) an instrumentation scope, written to `*out`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_scope(
    pipeline: *const otlpflow_pipeline,
    name: otlpflow_str,
    version: otlpflow_str,
    out: *mut otlpflow_scope,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, n, v) = match unsafe { (ref_of(pipeline), str_of(name), str_of(version)) } {
            (Ok(p), Ok(n), Ok(v)) => (p, n, v),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        let (id, pid) = p.pipeline.scope(n, v).to_parts();
        // SAFETY: NULL or writable.
        match unsafe { write_out(out, otlpflow_scope { id, pipeline: pid }) } {
            Ok(()) => R::Ok,
            Err(e) => e,
        }
    })
}

pub(crate) fn record_result(r: Result<(), RecordError>) -> otlpflow_result {
    match r {
        Ok(()) => R::Ok,
        Err(RecordError::Full) => R::Full,
        Err(RecordError::TooLarge) => R::TooLarge,
        Err(RecordError::Shutdown) => R::Shutdown,
        Err(RecordError::InvalidScope) => R::InvalidScope,
        Err(RecordError::RateLimited) => R::RateLimited,
        Err(RecordError::Memory) => R::Memory,
        Err(RecordError::Invalid) => R::InvalidArgument,
    }
}

/// Records one span (see `otlpflow_span`). Never blocks under the default
/// policy. Returns `OTLPFLOW_RESULT_FULL`, `_TOO_LARGE` or `_SHUTDOWN` when
/// the span was refused (and counted), or an argument error, in which case
/// nothing was recorded.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_span(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    span: *const otlpflow_span,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, sc, s) = match unsafe { (ref_of(pipeline), ref_of(scope), ref_of(span)) } {
            (Ok(p), Ok(sc), Ok(s)) => (p, sc, s),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        record_one(p, sc, s)
    })
}

fn record_one(p: &otlpflow_pipeline, sc: &otlpflow_scope, s: &otlpflow_span) -> otlpflow_result {
    let mut values = ValuePool::new();
    let mut kvs = KvPool::new();
    let mut events = EventPool::new();
    let mut links = LinkPool::new();
    // SAFETY: every pointer inside the span is valid for this call, per the
    // contract of the record functions.
    let span = match unsafe { convert(s, &mut values, &mut kvs, &mut events, &mut links) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    record_result(
        p.pipeline
            .record_span(&Scope::from_parts(sc.id, sc.pipeline), &span),
    )
}

/// Records `len` spans; writes how many were accepted and refused (each
/// refusal counted in the stats by reason, and an invalid span counted as
/// refused too). One bad span does not stop the others.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_batch(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    spans: *const otlpflow_span,
    len: usize,
    out_accepted: *mut usize,
    out_dropped: *mut usize,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, sc, list) = match unsafe { (ref_of(pipeline), ref_of(scope), slice_of(spans, len)) }
        {
            (Ok(p), Ok(sc), Ok(l)) => (p, sc, l),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        if out_accepted.is_null() || out_dropped.is_null() {
            return R::NullArgument;
        }
        let mut accepted = 0;
        for s in list {
            if record_one(p, sc, s) == R::Ok {
                accepted += 1;
            }
        }
        // SAFETY: both checked non-NULL; writable per the contract.
        unsafe {
            let _ = write_out(out_accepted, accepted);
            let _ = write_out(out_dropped, list.len() - accepted);
        }
        R::Ok
    })
}

/// Writes the stats to `*out` if `out` is not NULL.
///
/// # Safety
/// `out` NULL or writable.
unsafe fn put_stats(out: *mut otlpflow_stats, s: Stats) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        let _ = unsafe { write_out(out, s.into()) };
    }
}

/// Runs a control call that may time out, writes the stats afterwards (also
/// on timeout) and maps its error to a result code.
fn control(
    pipeline: *const otlpflow_pipeline,
    out_stats: *mut otlpflow_stats,
    call: impl FnOnce(&Pipeline) -> Result<Stats, otlpflow::Error>,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live pipeline.
        let p = match unsafe { ref_of(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let r = call(&p.pipeline);
        // SAFETY: NULL or writable.
        unsafe { put_stats(out_stats, p.pipeline.stats()) };
        match r {
            Ok(_) => R::Ok,
            Err(e) if e.is_timeout() => R::Timeout,
            Err(e) if e.is_shutdown() => R::Shutdown,
            Err(_) => R::Panic,
        }
    })
}

/// Waits until everything recorded before the call is exported or failed
/// for good, or `timeout_ms` passes (`OTLPFLOW_RESULT_TIMEOUT`). Writes the
/// stats to `*out_stats` if it is not NULL (also on timeout).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_flush(
    pipeline: *const otlpflow_pipeline,
    timeout_ms: u64,
    out_stats: *mut otlpflow_stats,
) -> otlpflow_result {
    control(pipeline, out_stats, |p| {
        p.flush(Duration::from_millis(timeout_ms))
    })
}

/// Refuses new records, flushes for up to `timeout_ms`, and stops the
/// workers; anything unsent at the deadline is counted as failed, so
/// `in_flight` is 0 afterwards. A second call returns
/// `OTLPFLOW_RESULT_SHUTDOWN`. Writes the final stats to `*out_stats` if it
/// is not NULL.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_shutdown(
    pipeline: *const otlpflow_pipeline,
    timeout_ms: u64,
    out_stats: *mut otlpflow_stats,
) -> otlpflow_result {
    control(pipeline, out_stats, |p| {
        p.shutdown(Duration::from_millis(timeout_ms))
    })
}

/// Writes a snapshot of the counters to `*out`. Never blocks.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_stats(
    pipeline: *const otlpflow_pipeline,
    out: *mut otlpflow_stats,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live pipeline.
        let p = match unsafe { ref_of(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        // SAFETY: NULL or writable.
        match unsafe { write_out(out, p.pipeline.stats().into()) } {
            Ok(()) => R::Ok,
            Err(e) => e,
        }
    })
}

/// The last export error as text (empty if none): see `copy_text` rules:
/// `*out_len` gets the length; a buffer shorter than length + 1 returns
/// `OTLPFLOW_RESULT_BUFFER_TOO_SMALL` and writes nothing else.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_last_error(
    pipeline: *const otlpflow_pipeline,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live pipeline.
        let p = match unsafe { ref_of(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let text = p.pipeline.last_error().unwrap_or_default();
        // SAFETY: buffer arguments per the contract.
        unsafe { copy_text(&text, buf, cap, out_len) }
    })
}

/// Writes the export path's health to `*out`: 0 healthy, 1 degraded (some
/// attempts failing), 2 down (every worker's last 5 attempts or more failed).
/// It recovers by itself on the next successful export.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_health(
    pipeline: *const otlpflow_pipeline,
    out: *mut u32,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live pipeline.
        let p = match unsafe { ref_of(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        // SAFETY: NULL or writable.
        match unsafe { write_out(out, p.pipeline.health() as u32) } {
            Ok(()) => R::Ok,
            Err(e) => e,
        }
    })
}

/// Call just before `fork()`. otlpflow registers these three hooks with
/// `pthread_atfork` itself when the first pipeline starts, so most programs
/// never call them; calling them as well is harmless.
#[no_mangle]
pub extern "C" fn otlpflow_fork_prepare() {
    ffi_boundary!((), { otlpflow::fork::prepare() })
}

/// Call in the parent just after `fork()`.
#[no_mangle]
pub extern "C" fn otlpflow_fork_parent() {
    ffi_boundary!((), { otlpflow::fork::parent() })
}

/// Call in the child just after `fork()`: the child drops what the parent
/// had buffered (counted as `failed_fork`) and restarts its workers on its
/// next call. Async-signal-safe.
#[no_mangle]
pub extern "C" fn otlpflow_fork_child() {
    ffi_boundary!((), { otlpflow::fork::child() })
}
