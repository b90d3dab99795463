//! Waiting for delivery over the C ABI: record spans under one receipt and
//! block until the receiver has answered for all of them (or a timeout),
//! with how each of them ended in `otlpflow_delivery`.

use std::os::raw::c_char;
use std::time::Duration;

use otlpflow::{Delivery, Scope, Signal};

use crate::pipeline::{batch_args, otlpflow_pipeline, otlpflow_scope, with_span};
use crate::ptr::{c_text, read_size, write_prefix};
use crate::span::otlpflow_span;
use crate::stats::{OTLPFLOW_DROP_REASONS, OTLPFLOW_FAIL_REASONS};
use crate::{ffi_boundary, otlpflow_result, R};

/// Bytes of `otlpflow_delivery.message`, its NUL included.
pub const OTLPFLOW_DELIVERY_MESSAGE: usize = 256;

/// How the records of one waiting call ended. Set `size =
/// sizeof(otlpflow_delivery)` before the call (a versioned struct, as
/// `otlpflow_stats`). Once resolved, `delivered + rejected + sum(dropped) +
/// sum(failed) = records`. Delivery is at least once: a request retried
/// after a lost answer may have reached the receiver twice.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_delivery {
    /// The size of this struct as the caller knows it; on return, the bytes
    /// written.
    pub size: usize,
    /// Records handed in.
    pub records: u64,
    /// Records in requests the receiver acknowledged.
    pub delivered: u64,
    /// Records the receiver rejected (partial success). When one request
    /// carried records of several waiting calls, each counts the rejection
    /// against its own records.
    pub rejected: u64,
    /// Records refused at ingest, indexed by `otlpflow_drop_reason`.
    pub dropped: [u64; OTLPFLOW_DROP_REASONS],
    /// Records accepted and then lost, indexed by `otlpflow_fail_reason`.
    pub failed: [u64; OTLPFLOW_FAIL_REASONS],
    /// The first error that came with a loss or rejection (the receiver's
    /// message or the export error), NUL-terminated and cut to fit; empty if
    /// none. Never holds header values or keys.
    pub message: [c_char; OTLPFLOW_DELIVERY_MESSAGE],
}

impl From<&Delivery> for otlpflow_delivery {
    fn from(d: &Delivery) -> otlpflow_delivery {
        let message = c_text(d.message.as_deref().unwrap_or_default());
        otlpflow_delivery {
            size: std::mem::size_of::<otlpflow_delivery>(),
            records: d.records,
            delivered: d.delivered,
            rejected: d.rejected,
            dropped: d.dropped.as_array(),
            failed: d.failed.as_array(),
            message,
        }
    }
}

/// Records `len` spans under one receipt, then blocks until each of them
/// is delivered, rejected by the receiver, refused at ingest or lost, or
/// `timeout_ms` passes. Writes how they ended to `*out` (set `out->size`
/// first): in full when the call returns `OTLPFLOW_RESULT_OK` (check
/// `out->delivered == out->records`), what is known so far with
/// `OTLPFLOW_RESULT_TIMEOUT` (the rest are still on their way; they are not
/// cancelled). A span that does not convert (a NUL string, a bad enum) is
/// counted as dropped `invalid`, in the stats and in `*out`; it does not
/// stop the others. Under `OTLPFLOW_POLICY_BLOCK` recording may wait for
/// room first, within the policy's own wait.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_batch_wait(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    spans: *const otlpflow_span,
    len: usize,
    timeout_ms: u64,
    out: *mut otlpflow_delivery,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, sc, list) = match unsafe { batch_args(pipeline, scope, spans, len) } {
            Ok(a) => a,
            Err(e) => return e,
        };
        // Checked before anything is recorded: a bad `out` records nothing.
        // SAFETY: `out` per the contract (NULL is refused by read_size).
        let size = match unsafe { read_size(out) } {
            Ok(s) if s >= std::mem::offset_of!(otlpflow_delivery, message) => {
                s.min(std::mem::size_of::<otlpflow_delivery>())
            }
            Ok(_) => return R::InvalidArgument,
            Err(e) => return e,
        };
        let scope = Scope::from_parts(sc.id, sc.pipeline);
        let mut acked = p.pipeline.acked();
        for s in list {
            if with_span(s, |span| acked.record(&scope, span)).is_err() {
                acked.refuse_invalid(Signal::Traces);
            }
        }
        let receipt = acked.finish();
        let (code, delivery) = match receipt.wait(Duration::from_millis(timeout_ms)) {
            Some(d) => (R::Ok, d),
            None => (R::Timeout, receipt.progress()),
        };
        let mut c = otlpflow_delivery::from(&delivery);
        c.size = size;
        // SAFETY: `out` is writable for `size` bytes, per the contract.
        match unsafe { write_prefix(out, &c, size) } {
            Ok(()) => code,
            Err(e) => e,
        }
    })
}
