//! The pipeline functions of the C ABI: start, scopes, recording spans,
//! flush, shutdown, health and the last error.

use std::os::raw::c_char;
use std::time::Duration;

use otlpflow::{Pipeline, RecordError, Scope, Stats};

use crate::config::otlpflow_config;
use crate::enums::otlpflow_health;
use crate::ptr::{
    copy_text, free_handle, handle_mut, handle_ref, into_handle, otlpflow_str, ref_of, slice_of,
    str_of, write_out, Handle,
};
use crate::span::{convert, otlpflow_span, EventPool, KvPool, LinkPool, ValuePool};
use crate::stats::{check_stats_out, otlpflow_stats, write_stats};
use crate::{ffi_boundary, otlpflow_result, result_of, R};

/// A running pipeline. An `Arc`-backed engine in a `Box` underneath,
/// reached through a checked handle; every function taking a
/// `const otlpflow_pipeline *` may be called from any number of threads at
/// once. Free it with `otlpflow_pipeline_free` (which shuts it down first
/// if needed) once no thread uses it any more.
pub struct otlpflow_pipeline {
    pub(crate) pipeline: Pipeline,
}

impl Handle for otlpflow_pipeline {
    const KIND: u64 = 2;
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
        // SAFETY: not used elsewhere during the call, per the contract.
        let cfg = match unsafe { handle_mut(config) } {
            Ok(c) => c,
            Err(e) => return e,
        };
        if out.is_null() {
            return R::NullArgument;
        }
        match cfg.builder.clone().start() {
            Ok(pipeline) => {
                cfg.error.clear();
                let handle = match into_handle(otlpflow_pipeline { pipeline }) {
                    Ok(h) => h,
                    Err(e) => return e,
                };
                // SAFETY: checked non-NULL above; writable per the contract.
                result_of(unsafe { write_out(out, handle) })
            }
            Err(e) => {
                cfg.error = e.to_string();
                if e.is_config() {
                    R::InvalidConfig
                } else {
                    R::Internal
                }
            }
        }
    })
}

/// Frees a pipeline, shutting it down first (flushing for up to 5 s) if
/// `otlpflow_pipeline_shutdown` was not called. NULL is fine (`OK`); a
/// handle already freed, or one that is not a pipeline, returns
/// `OTLPFLOW_RESULT_INVALID_HANDLE` and frees nothing. No other thread may
/// be using the pipeline.
#[no_mangle]
pub extern "C" fn otlpflow_pipeline_free(pipeline: *mut otlpflow_pipeline) -> otlpflow_result {
    ffi_boundary!(R::Panic, { result_of(free_handle(pipeline)) })
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
        let (p, n, v) = match unsafe { (handle_ref(pipeline), str_of(name), str_of(version)) } {
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
        Err(RecordError::Memory | RecordError::SystemMemory) => R::Memory,
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
        let (p, sc, s) = match unsafe { (handle_ref(pipeline), ref_of(scope), ref_of(span)) } {
            (Ok(p), Ok(sc), Ok(s)) => (p, sc, s),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        record_one(p, sc, s)
    })
}

fn record_one(p: &otlpflow_pipeline, sc: &otlpflow_scope, s: &otlpflow_span) -> otlpflow_result {
    let scope = Scope::from_parts(sc.id, sc.pipeline);
    match with_span(s, |span| p.pipeline.record_span(&scope, span)) {
        Ok(r) => record_result(r),
        Err(e) => e,
    }
}

/// Converts a C span and hands it to `f`; a span that does not convert is
/// the error code (the caller counts it).
pub(crate) fn with_span<T>(
    s: &otlpflow_span,
    f: impl FnOnce(&otlpflow::Span<'_>) -> T,
) -> Result<T, otlpflow_result> {
    let mut values = ValuePool::new();
    let mut kvs = KvPool::new();
    let mut events = EventPool::new();
    let mut links = LinkPool::new();
    // SAFETY: every pointer inside the span is valid for this call, per the
    // contract of the record functions.
    let span = unsafe { convert(s, &mut values, &mut kvs, &mut events, &mut links) }?;
    Ok(f(&span))
}

/// The pipeline, scope and spans of a batch call, checked.
///
/// # Safety
/// As the batch functions' contract: each pointer NULL or valid, `spans`
/// valid for `len` elements, none freed during the call.
pub(crate) unsafe fn batch_args<'a>(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    spans: *const otlpflow_span,
    len: usize,
) -> Result<
    (
        &'a otlpflow_pipeline,
        &'a otlpflow_scope,
        &'a [otlpflow_span],
    ),
    otlpflow_result,
> {
    // SAFETY: forwarded.
    unsafe { Ok((handle_ref(pipeline)?, ref_of(scope)?, slice_of(spans, len)?)) }
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
        let (p, sc, list) = match unsafe { batch_args(pipeline, scope, spans, len) } {
            Ok(a) => a,
            Err(e) => return e,
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

/// Runs a control call that may time out, writes the stats afterwards (also
/// on timeout) and maps its error to a result code.
fn control(
    pipeline: *const otlpflow_pipeline,
    out_stats: *mut otlpflow_stats,
    call: impl FnOnce(&Pipeline) -> Result<Stats, otlpflow::Error>,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        // A versioned stats struct whose size is wrong is refused before
        // anything happens.
        // SAFETY: NULL or a stats struct, per the contract.
        if let Err(e) = unsafe { check_stats_out(out_stats) } {
            return e;
        }
        let r = call(&p.pipeline);
        if !out_stats.is_null() {
            // SAFETY: checked above; writable per the contract.
            let _ = unsafe { write_stats(out_stats, p.pipeline.stats()) };
        }
        match r {
            Ok(_) => R::Ok,
            Err(e) if e.is_timeout() => R::Timeout,
            Err(e) if e.is_shutdown() => R::Shutdown,
            Err(e) if e.is_config() => R::InvalidArgument,
            Err(_) => R::Internal,
        }
    })
}

/// Waits until everything recorded before the call is exported or failed
/// for good, or `timeout_ms` passes (`OTLPFLOW_RESULT_TIMEOUT`;
/// `UINT64_MAX` waits without limit). Writes the
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

/// Refuses new records, flushes for up to `timeout_ms` (`UINT64_MAX`: no
/// limit), and stops the workers; anything unsent at the deadline is counted as failed, so
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
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let text = p.pipeline.last_error().unwrap_or_default();
        // SAFETY: buffer arguments per the contract.
        result_of(unsafe { copy_text(&text, buf, cap, out_len) })
    })
}

/// Writes the export path's health to `*out`, an `otlpflow_health`:
/// `OTLPFLOW_HEALTH_HEALTHY`, `_DEGRADED` (some attempts failing, a circuit
/// breaker open, slow round trips) or `_DOWN` (every endpoint in use has its
/// circuit breaker open). It recovers by itself on the next answer.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_health(
    pipeline: *const otlpflow_pipeline,
    out: *mut u32,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        // SAFETY: NULL or writable.
        match unsafe { write_out(out, otlpflow_health::of(p.pipeline.health()) as u32) } {
            Ok(()) => R::Ok,
            Err(e) => e,
        }
    })
}
