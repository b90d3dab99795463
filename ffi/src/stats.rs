//! The pipeline's counters over the C ABI: `otlpflow_stats`, a versioned
//! struct (its leading `size` says how much of it the caller knows, as
//! rustls-ffi and libdatadog version theirs), the loss counts as arrays
//! indexed by the reason enums, and the reasons' names.

use std::os::raw::c_char;

use otlpflow::{DropReason, FailReason, Signal, Stats};

use crate::enums::{otlpflow_drop_reason, otlpflow_fail_reason};
use crate::pipeline::otlpflow_pipeline;
use crate::ptr::{handle_ref, read_size, write_prefix};
use crate::{ffi_boundary, otlpflow_result, result_of, R};

/// Number of `otlpflow_drop_reason`s: the length of `otlpflow_stats.dropped`.
pub const OTLPFLOW_DROP_REASONS: usize = 7;
/// Number of `otlpflow_fail_reason`s: the length of
/// `otlpflow_stats.failed_by_reason`.
pub const OTLPFLOW_FAIL_REASONS: usize = 5;
/// Number of `otlpflow_signal`s: the length of the `*_by_signal` arrays.
pub const OTLPFLOW_SIGNALS: usize = 3;

const _: () = assert!(OTLPFLOW_DROP_REASONS == DropReason::COUNT);
const _: () = assert!(OTLPFLOW_FAIL_REASONS == FailReason::COUNT);
const _: () = assert!(OTLPFLOW_SIGNALS == Signal::ALL.len());

/// Counters of a pipeline (see the Rust `Stats` for their meaning). Before
/// passing one in, set `size = sizeof(otlpflow_stats)`: the library writes
/// at most that many bytes and sets `size` to what it wrote, so a program
/// built against an older header keeps working with a newer library (new
/// fields are only ever appended). The identities
/// `offered = accepted + sum(dropped)` and
/// `accepted = exported + failed + rejected + in_flight` hold after a flush.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct otlpflow_stats {
    /// The size of this struct as the caller knows it (set it to
    /// `sizeof(otlpflow_stats)`); on return, the bytes written.
    pub size: usize,
    /// Records the host tried to record.
    pub offered: u64,
    /// Records taken into a ring.
    pub accepted: u64,
    /// Records acknowledged by the receiver.
    pub exported: u64,
    /// Records failed for good (the sum of `failed_by_reason`).
    pub failed: u64,
    /// Records rejected by the server (partial success).
    pub rejected: u64,
    /// Accepted and not yet exported, failed or rejected.
    pub in_flight: u64,
    /// Records refused at ingest, indexed by `otlpflow_drop_reason`.
    pub dropped: [u64; OTLPFLOW_DROP_REASONS],
    /// Records failed for good, indexed by `otlpflow_fail_reason`.
    pub failed_by_reason: [u64; OTLPFLOW_FAIL_REASONS],
    /// Of `offered`, indexed by `otlpflow_signal`.
    pub offered_by_signal: [u64; OTLPFLOW_SIGNALS],
    /// Of `accepted`, indexed by `otlpflow_signal`.
    pub accepted_by_signal: [u64; OTLPFLOW_SIGNALS],
    /// Of `exported`, indexed by `otlpflow_signal`.
    pub exported_by_signal: [u64; OTLPFLOW_SIGNALS],
    /// Export requests sent, retries included.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// Failed request attempts.
    pub request_errors: u64,
    /// Requests in flight now.
    pub in_flight_requests: u64,
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
    /// End-to-end latency (commit to acknowledgement, sampled), median, ns.
    pub e2e_latency_p50_ns: u64,
    /// 99th percentile.
    pub e2e_latency_p99_ns: u64,
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
    /// The fullest shard ring, percent.
    pub ring_fill_max_pct: u64,
    /// Export round-trip latency: smallest and mean, nanoseconds.
    pub export_latency_min_ns: u64,
    /// Mean.
    pub export_latency_mean_ns: u64,
    /// End-to-end latency: smallest, mean and largest, nanoseconds.
    pub e2e_latency_min_ns: u64,
    /// Mean.
    pub e2e_latency_mean_ns: u64,
    /// Largest.
    pub e2e_latency_max_ns: u64,
    /// Milliseconds since the pipeline started.
    pub uptime_ms: u64,
    /// The window of the last-interval rates below, milliseconds (since
    /// the newest earlier stats snapshot at least 1 s old).
    pub rate_window_ms: u64,
    /// Records offered per second over the last interval.
    pub offered_per_sec: u64,
    /// Records acknowledged per second over the last interval.
    pub exported_per_sec: u64,
    /// Uncompressed bytes exported per second over the last interval.
    pub bytes_raw_per_sec: u64,
    /// Wire bytes per second over the last interval.
    pub bytes_wire_per_sec: u64,
    /// Requests per second over the last interval.
    pub requests_per_sec: u64,
    /// Failed attempts per second over the last interval.
    pub request_errors_per_sec: u64,
    /// Records acknowledged per second since start.
    pub exported_per_sec_since_start: u64,
    /// Wire bytes per second since start.
    pub bytes_wire_per_sec_since_start: u64,
    /// Requests per second since start.
    pub requests_per_sec_since_start: u64,
    /// Records refused per second over the last interval, indexed by
    /// `otlpflow_drop_reason`.
    pub dropped_per_sec: [u64; OTLPFLOW_DROP_REASONS],
    /// Records failed per second over the last interval, indexed by
    /// `otlpflow_fail_reason`.
    pub failed_per_sec: [u64; OTLPFLOW_FAIL_REASONS],
    /// Records this process wrote to the disk spool (they left `in_flight`).
    pub spooled: u64,
    /// Bytes in the disk spool's segments now.
    pub spool_bytes: u64,
    /// Records replayed from the spool and acknowledged.
    pub spool_replayed: u64,
    /// Spooled requests found corrupt and skipped.
    pub spool_corrupt: u64,
    /// Records dropped with the oldest segment of a full spool.
    pub spool_dropped_full: u64,
    /// Replayed records the receiver refused for good.
    pub spool_failed: u64,
    /// Spool writes and reads that failed.
    pub spool_errors: u64,
    /// Measurements dropped: a histogram's NaN or infinity, a counter's
    /// add past `INT64_MAX`.
    pub dropped_measurements: u64,
    /// `otlpflow_pipeline_scope` calls answered with the shared
    /// `otlpflow.overflow` scope because `max_scopes` scopes were
    /// registered.
    pub scopes_overflowed: u64,
}

impl From<Stats> for otlpflow_stats {
    fn from(s: Stats) -> Self {
        let by_signal = |p: &otlpflow::PerSignal<u64>| Signal::ALL.map(|sig| p[sig]);
        otlpflow_stats {
            size: std::mem::size_of::<otlpflow_stats>(),
            offered: s.offered,
            accepted: s.accepted,
            exported: s.exported,
            failed: s.failed.total(),
            rejected: s.rejected,
            in_flight: s.in_flight,
            dropped: s.dropped.as_array(),
            failed_by_reason: s.failed.as_array(),
            offered_by_signal: by_signal(&s.offered_by_signal),
            accepted_by_signal: by_signal(&s.accepted_by_signal),
            exported_by_signal: by_signal(&s.exported_by_signal),
            requests: s.requests,
            retries: s.retries,
            request_errors: s.request_errors,
            in_flight_requests: s.in_flight_requests,
            bytes_raw: s.bytes_raw,
            bytes_wire: s.bytes_wire,
            export_latency_p50_ns: s.export_latency.p50_ns,
            export_latency_p99_ns: s.export_latency.p99_ns,
            export_latency_max_ns: s.export_latency.max_ns,
            e2e_latency_p50_ns: s.e2e_latency.p50_ns,
            e2e_latency_p99_ns: s.e2e_latency.p99_ns,
            concurrency_limit: s.concurrency_limit,
            batch_target: s.batch_target,
            memory_used: s.memory_used,
            memory_peak: s.memory_peak,
            breaker_opened: s.breaker_opened,
            ring_fill_max_pct: s.ring_fill_max_pct,
            export_latency_min_ns: s.export_latency.min_ns,
            export_latency_mean_ns: s.export_latency.mean_ns,
            e2e_latency_min_ns: s.e2e_latency.min_ns,
            e2e_latency_mean_ns: s.e2e_latency.mean_ns,
            e2e_latency_max_ns: s.e2e_latency.max_ns,
            uptime_ms: s.uptime_ms,
            rate_window_ms: s.rates_last.window_ms,
            offered_per_sec: s.rates_last.offered,
            exported_per_sec: s.rates_last.exported,
            bytes_raw_per_sec: s.rates_last.bytes_raw,
            bytes_wire_per_sec: s.rates_last.bytes_wire,
            requests_per_sec: s.rates_last.requests,
            request_errors_per_sec: s.rates_last.request_errors,
            exported_per_sec_since_start: s.rates_since_start.exported,
            bytes_wire_per_sec_since_start: s.rates_since_start.bytes_wire,
            requests_per_sec_since_start: s.rates_since_start.requests,
            dropped_per_sec: s.rates_last.dropped.as_array(),
            failed_per_sec: s.rates_last.failed.as_array(),
            spooled: s.spooled,
            spool_bytes: s.spool.bytes,
            spool_replayed: s.spool.replayed,
            spool_corrupt: s.spool.corrupt,
            spool_dropped_full: s.spool.dropped_full,
            spool_failed: s.spool.failed,
            spool_errors: s.spool.errors,
            dropped_measurements: s.dropped_measurements,
            scopes_overflowed: s.scopes_overflowed,
        }
    }
}

/// The bytes of a caller's stats struct to write: its `size`, which must
/// cover at least the fields of the first version (through `in_flight`).
///
/// # Safety
/// `out` must be NULL or a stats struct whose `size` is readable.
pub(crate) unsafe fn check_stats_out(out: *const otlpflow_stats) -> Result<(), otlpflow_result> {
    if out.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded.
    let size = unsafe { read_size(out)? };
    if size < std::mem::offset_of!(otlpflow_stats, dropped) {
        return Err(otlpflow_result::InvalidArgument);
    }
    Ok(())
}

/// Writes `s` into the caller's struct, as much of it as the caller's
/// `size` says it knows, and sets `size` to the bytes written.
///
/// # Safety
/// `out` must be a stats struct writable for its `size` bytes.
pub(crate) unsafe fn write_stats(
    out: *mut otlpflow_stats,
    s: Stats,
) -> Result<(), otlpflow_result> {
    // SAFETY: forwarded.
    unsafe { check_stats_out(out)? };
    // SAFETY: forwarded; checked non-NULL and aligned by `check_stats_out`.
    let size = unsafe { read_size(out)? }.min(std::mem::size_of::<otlpflow_stats>());
    let mut c = otlpflow_stats::from(s);
    c.size = size;
    // SAFETY: forwarded.
    unsafe { write_prefix(out, &c, size) }
}

/// Writes a snapshot of the counters to `*out` (set `out->size` first).
/// Never blocks. A `size` smaller than the first version's fields returns
/// `OTLPFLOW_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_stats(
    pipeline: *const otlpflow_pipeline,
    out: *mut otlpflow_stats,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        if out.is_null() {
            return R::NullArgument;
        }
        // SAFETY: a stats struct with its size set, per the contract.
        result_of(unsafe { write_stats(out, p.pipeline.stats()) })
    })
}

/// The name of a drop reason (`"full"`, `"memory"`, ...), as Prometheus
/// and the Rust stats spell it: a static NUL-terminated string, or NULL
/// for a number that is not an `otlpflow_drop_reason`.
#[no_mangle]
pub extern "C" fn otlpflow_drop_reason_name(reason: u32) -> *const c_char {
    ffi_boundary!(std::ptr::null(), {
        match otlpflow_drop_reason::from_u32(reason) {
            Ok(_) => static_name(DropReason::ALL[reason as usize].name()),
            Err(_) => std::ptr::null(),
        }
    })
}

/// The name of a fail reason (`"permanent"`, `"exhausted"`, ...): a static
/// NUL-terminated string, or NULL for a number that is not an
/// `otlpflow_fail_reason`.
#[no_mangle]
pub extern "C" fn otlpflow_fail_reason_name(reason: u32) -> *const c_char {
    ffi_boundary!(std::ptr::null(), {
        match otlpflow_fail_reason::from_u32(reason) {
            Ok(_) => static_name(FailReason::ALL[reason as usize].name()),
            Err(_) => std::ptr::null(),
        }
    })
}

/// A reason's name as a static C string (made once per name, kept for the
/// life of the process).
fn static_name(name: &'static str) -> *const c_char {
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashMap<&'static str, &'static std::ffi::CStr>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let map = names.get_or_insert_with(HashMap::new);
    let c = map.entry(name).or_insert_with(|| {
        let owned = CString::new(name).unwrap_or_default();
        Box::leak(owned.into_boxed_c_str())
    });
    c.as_ptr()
}
