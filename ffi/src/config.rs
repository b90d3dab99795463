//! The configuration functions of the C ABI: a config handle and its
//! setters, each a thin call into the Rust builder.

use std::os::raw::c_char;
use std::time::Duration;

use otlpflow::{OwnedValue, PipelineBuilder, Policy, Protocol, Value};

use crate::enums::{otlpflow_compression, otlpflow_policy, otlpflow_protocol};
use crate::ptr::{
    copy_text, free_handle, handle_mut, handle_ref, into_handle, otlpflow_str, ref_of, str_of,
    write_out, Handle,
};
use crate::span::{otlpflow_value, scalar_of};
use crate::{ffi_boundary, otlpflow_result, result_of, R};

/// Pipeline settings, built up with setters and handed to
/// `otlpflow_pipeline_start`. A `Box` underneath, reached through a checked
/// handle; not thread-safe: use one config from one thread at a time. Free
/// it with `otlpflow_config_free`.
pub struct otlpflow_config {
    pub(crate) builder: PipelineBuilder,
    pub(crate) error: String,
}

impl Handle for otlpflow_config {
    const KIND: u64 = 1;
}

/// Runs `f` on the config's builder.
///
/// # Safety
/// No other thread may use or free `config` during the call.
unsafe fn with_builder(
    config: *mut otlpflow_config,
    f: impl FnOnce(PipelineBuilder) -> Result<PipelineBuilder, otlpflow_result>,
) -> otlpflow_result {
    // SAFETY: forwarded to the caller's contract.
    let cfg = match unsafe { handle_mut(config) } {
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
        if out.is_null() {
            return R::NullArgument;
        }
        let handle = match into_handle(otlpflow_config {
            builder: PipelineBuilder::default(),
            error: String::new(),
        }) {
            Ok(h) => h,
            Err(e) => return e,
        };
        // SAFETY: `out` is non-NULL and writable, per this function's
        // contract.
        match unsafe { write_out(out, handle) } {
            Ok(()) => R::Ok,
            Err(e) => {
                let _ = free_handle(handle);
                e
            }
        }
    })
}

/// Frees a config. NULL is fine (`OK`); a handle already freed, or one
/// that is not a config, returns `OTLPFLOW_RESULT_INVALID_HANDLE` and frees
/// nothing.
#[no_mangle]
pub extern "C" fn otlpflow_config_free(config: *mut otlpflow_config) -> otlpflow_result {
    ffi_boundary!(R::Panic, { result_of(free_handle(config)) })
}

/// Applies the standard `OTEL_*` environment variables (endpoint, headers,
/// compression, timeout, protocol, service name, resource attributes), then
/// `OTLPFLOW_<NAME>` for each setting of `otlpflow_config_set` they do not
/// cover (`OTLPFLOW_PROMETHEUS`, `OTLPFLOW_MAX_BATCH_ITEMS`, ...). Call
/// it before the setters you want to win over the environment. A malformed
/// variable returns `OTLPFLOW_RESULT_INVALID_CONFIG`; the message naming it
/// is available from `otlpflow_config_error`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_apply_env(config: *mut otlpflow_config) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: NULL or a live config.
        unsafe { with_checked_builder(config, |b| b.apply_env()) }
    })
}

/// Runs a fallible builder step: on error the config keeps its settings,
/// the error's message is kept for `otlpflow_config_error`, and the result
/// is `INVALID_CONFIG`.
///
/// # Safety
/// No other thread may use or free `config` during the call.
unsafe fn with_checked_builder(
    config: *mut otlpflow_config,
    f: impl FnOnce(PipelineBuilder) -> Result<PipelineBuilder, otlpflow::Error>,
) -> otlpflow_result {
    let mut message = None;
    // SAFETY: forwarded to the caller's contract.
    let r = unsafe {
        with_builder(config, |b| {
            f(b).map_err(|e| {
                message = Some(e.to_string());
                R::InvalidConfig
            })
        })
    };
    if let Some(m) = message {
        // SAFETY: the call above succeeded in borrowing it.
        if let Ok(cfg) = unsafe { handle_mut(config) } {
            cfg.error = m;
        }
    }
    r
}

/// Applies any setting by name, with a text value: every setting of the
/// Rust builder is reachable this way (`"memory_budget"`, `"64M"`;
/// `"tls_ca_file"`, a path; `"traces.endpoint"`, a URL;
/// `"header.authorization"`, a secret). Sizes take `K`/`M`/`G`, durations
/// a unit (`250ms`, `5s`; a bare number is milliseconds), pairs are
/// `A,B`. The names and values are listed in the README ("Every setting
/// by name"). An unknown name or a malformed value returns
/// `OTLPFLOW_RESULT_INVALID_CONFIG`, leaves the config unchanged, and
/// keeps a message naming the setting (never its value) for
/// `otlpflow_config_error`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set(
    config: *mut otlpflow_config,
    name: otlpflow_str,
    value: otlpflow_str,
) -> otlpflow_result {
    set_pair(config, name, value, |b, n, v| b.set(n, v))
}

/// Applies a setting taking two strings (a name and a value); a failure's
/// message is kept for `otlpflow_config_error`.
fn set_pair(
    config: *mut otlpflow_config,
    name: otlpflow_str,
    value: otlpflow_str,
    f: impl FnOnce(PipelineBuilder, &str, &str) -> Result<PipelineBuilder, otlpflow::Error>,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: string arguments are valid for reads of their length.
        let (n, v) = match unsafe { (str_of(name), str_of(value)) } {
            (Ok(n), Ok(v)) => (n, v),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        // SAFETY: NULL or a live config.
        unsafe { with_checked_builder(config, |b| f(b, n, v)) }
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

/// Compression of request bodies: an `otlpflow_compression`
/// (`OTLPFLOW_COMPRESSION_NONE`, the default, `_GZIP` or `_ZSTD`).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_compression(
    config: *mut otlpflow_config,
    compression: u32,
) -> otlpflow_result {
    set(config, |b| {
        Ok(b.compression(otlpflow_compression::from_u32(compression)?.to_rust()))
    })
}

/// The export protocol: an `otlpflow_protocol` (`OTLPFLOW_PROTOCOL_GRPC`,
/// the default, or `OTLPFLOW_PROTOCOL_HTTP_PROTOBUF` over HTTP/1.1). The
/// default endpoint follows it (port 4317 or 4318).
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_config_set_protocol(
    config: *mut otlpflow_config,
    protocol: u32,
) -> otlpflow_result {
    set(config, |b| {
        Ok(b.protocol(match otlpflow_protocol::from_u32(protocol)? {
            otlpflow_protocol::Grpc => Protocol::Grpc,
            otlpflow_protocol::HttpProtobuf => Protocol::HttpProtobuf,
        }))
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

/// Records per batch, a fixed cap. Unset, batches start at 512 and grow
/// while most leave full: up to 16 times that while the path's round trip
/// is 10 ms or more, else up to requests of 224 KiB before compression and
/// 64 KiB after.
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

/// A fixed number of requests in flight per worker. Unset, each worker's
/// limit adapts (AIMD) from 4 up to a ceiling the memory budget bounds
/// (three quarters of it, at `max_batch_bytes` per request).
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

/// What a full ring does: an `otlpflow_policy`. `OTLPFLOW_POLICY_DROP_NEWEST`
/// (the default) refuses at once; `OTLPFLOW_POLICY_BLOCK` blocks the
/// recording thread up to `max_wait_ms`.
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
            with_builder(config, |b| {
                Ok(b.policy(match otlpflow_policy::from_u32(policy)? {
                    otlpflow_policy::DropNewest => Policy::DropNewest,
                    otlpflow_policy::Block => Policy::Block {
                        max_wait: Duration::from_millis(max_wait_ms),
                    },
                }))
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
    set_pair(config, name, value, |b, n, v| Ok(b.header(n, v)))
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
        // SAFETY: as above: the value's pointers are valid for the call.
        let owned = match unsafe { scalar_of(v) } {
            Ok(Value::Str(s)) => OwnedValue::Str(s.to_owned()),
            Ok(Value::Bool(b)) => OwnedValue::Bool(b),
            Ok(Value::I64(i)) => OwnedValue::I64(i),
            Ok(Value::F64(f)) => OwnedValue::F64(f),
            Ok(Value::Bytes(b)) => OwnedValue::Bytes(b.to_vec()),
            Ok(_) => return R::InvalidArgument,
            Err(e) => return e,
        };
        if k.is_empty() {
            return R::InvalidArgument;
        }
        // SAFETY: NULL or a live config.
        unsafe { with_builder(config, |b| Ok(b.resource_attribute(k, owned))) }
    })
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
        // SAFETY: not freed during the call, per the contract.
        match unsafe { handle_ref(config) } {
            // SAFETY: buffer arguments per the contract.
            Ok(cfg) => result_of(unsafe { copy_text(&cfg.error, buf, cap, out_len) }),
            Err(e) => e,
        }
    })
}
