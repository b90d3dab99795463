//! Per-endpoint counts over the C ABI, for signals routed across several
//! endpoints (a collector fleet): one endpoint at a time by index, so the
//! caller needs no array of versioned structs.

use std::os::raw::c_char;

use otlpflow::{EndpointStats, Signal};

use crate::pipeline::otlpflow_pipeline;
use crate::ptr::{c_text, handle_ref, read_size, write_out, write_prefix};
use crate::{ffi_boundary, otlpflow_result, R};

/// Bytes of `otlpflow_endpoint_stats.endpoint`, its NUL included.
pub const OTLPFLOW_ENDPOINT_NAME: usize = 256;

/// What one endpoint of a signal took, summed over the workers. Set `size =
/// sizeof(otlpflow_endpoint_stats)` before the call (a versioned struct, as
/// `otlpflow_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_endpoint_stats {
    /// The size of this struct as the caller knows it; on return, the bytes
    /// written.
    pub size: usize,
    /// The signal it receives, an `otlpflow_signal`.
    pub signal: u32,
    /// 1 while some worker's circuit breaker for it is open or probing.
    pub breaker_open: u32,
    /// Records it acknowledged.
    pub exported: u64,
    /// Requests sent to it, retries included.
    pub requests: u64,
    /// Attempts that failed.
    pub request_errors: u64,
    /// Records failed for good on their way to it.
    pub failed: u64,
    /// Its `host:port`, NUL-terminated (cut to fit).
    pub endpoint: [c_char; OTLPFLOW_ENDPOINT_NAME],
}

impl From<&EndpointStats> for otlpflow_endpoint_stats {
    fn from(e: &EndpointStats) -> otlpflow_endpoint_stats {
        let endpoint = c_text(&e.endpoint);
        otlpflow_endpoint_stats {
            size: std::mem::size_of::<otlpflow_endpoint_stats>(),
            signal: match e.signal {
                Signal::Traces => 0,
                Signal::Logs => 1,
                Signal::Metrics => 2,
            },
            breaker_open: u32::from(e.breaker_open),
            exported: e.exported,
            requests: e.requests,
            request_errors: e.request_errors,
            failed: e.failed,
            endpoint,
        }
    }
}

/// Writes the number of endpoints in use (all signals together) to
/// `*out_count` (NULL to skip it), and the counts of endpoint `index` (from
/// 0, in configuration order, signal by signal) to `*out` (set `out->size`
/// first; NULL to ask for the count only). An `index` past the last
/// endpoint returns `OTLPFLOW_RESULT_INVALID_ARGUMENT` and writes only the
/// count, so `for (i = 0; otlpflow_pipeline_endpoint_stats(p, i, &e, &n) ==
/// OTLPFLOW_RESULT_OK; i++)` visits each. Never blocks.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_endpoint_stats(
    pipeline: *const otlpflow_pipeline,
    index: usize,
    out: *mut otlpflow_endpoint_stats,
    out_count: *mut usize,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let all = p.pipeline.endpoint_stats();
        if !out_count.is_null() {
            // SAFETY: writable, per the contract.
            if let Err(e) = unsafe { write_out(out_count, all.len()) } {
                return e;
            }
        }
        if out.is_null() {
            return R::Ok;
        }
        let Some(e) = all.get(index) else {
            return R::InvalidArgument;
        };
        // SAFETY: `out` is a struct with its size set, per the contract.
        let size = match unsafe { read_size(out) } {
            Ok(s) if s >= std::mem::offset_of!(otlpflow_endpoint_stats, endpoint) => {
                s.min(std::mem::size_of::<otlpflow_endpoint_stats>())
            }
            Ok(_) => return R::InvalidArgument,
            Err(e) => return e,
        };
        let mut c = otlpflow_endpoint_stats::from(e);
        c.size = size;
        // SAFETY: `out` is writable for `size` bytes, per the contract.
        match unsafe { write_prefix(out, &c, size) } {
            Ok(()) => R::Ok,
            Err(e) => e,
        }
    })
}
