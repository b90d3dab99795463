//! Delivery receipts: what a caller of `record_*_acked` holds, and how the
//! engine resolves it.
//!
//! A receipt covers the records of one call. Each of them is either refused
//! at ingest (counted against the receipt by the caller's thread), or
//! written to the ring with the receipt's id in front of it (tag bit
//! [`RECEIPT_BIT`]). The worker that drains such a record strips the id,
//! looks the receipt up once per run of records, and carries a share of it
//! (the receipt and how many of its records) with the batch and then with
//! the export request. The request's outcome settles every share it
//! carries; a share dropped unsettled (a request abandoned at shutdown's
//! deadline) settles as a shutdown loss. The receipt resolves when all its
//! records are settled: delivered, rejected by the receiver, dropped or
//! failed.
//!
//! Records without a receipt pay nothing for this: the flag is a constant
//! in their path, and the worker tests one tag bit per record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::stats::{DropReason, Dropped, FailReason, Failed};

/// Tag bit of a ring record that starts with the 8-byte id of its receipt.
pub(crate) const RECEIPT_BIT: u32 = 1 << 30;
/// Bytes in front of a record that carries a receipt.
pub(crate) const RECEIPT_PREFIX: usize = 8;

/// How the records of one receipt ended. `delivered + rejected +
/// dropped.total() + failed.total() == records` once it is resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Records the call handed in.
    pub records: u64,
    /// Records in requests the receiver acknowledged (and did not reject).
    pub delivered: u64,
    /// Records the receiver rejected through partial success. When one
    /// request carried records of several receipts, the receiver does not
    /// say whose it rejected: each of them counts the rejection against its
    /// own records (never reporting delivered what may not have been).
    pub rejected: u64,
    /// Records refused at ingest, by reason (they never entered the
    /// pipeline).
    pub dropped: Dropped,
    /// Records accepted and then lost, by reason.
    pub failed: Failed,
    /// The first error message that came with a loss or a rejection: the
    /// receiver's partial-success message, or the export error.
    pub message: Option<String>,
}

impl Delivery {
    /// Whether every record was acknowledged by the receiver.
    pub fn all_delivered(&self) -> bool {
        self.delivered == self.records
    }

    /// Records that did not reach the receiver, or that it rejected.
    pub fn lost(&self) -> u64 {
        self.rejected + self.dropped.total() + self.failed.total()
    }

    fn settled(&self) -> u64 {
        self.delivered + self.lost()
    }
}

/// How some records of a receipt ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fate<'a> {
    Delivered,
    /// Rejected by the receiver, with its message.
    Rejected(&'a str),
    Dropped(DropReason),
    /// Failed after acceptance, with the error when there is one.
    Failed(FailReason, Option<&'a str>),
}

/// What is known of a receipt: its records' fates so far, and whether the
/// call that records them has finished (only then is `records` final).
struct Tally {
    d: Delivery,
    sealed: bool,
}

impl Tally {
    fn done(&self) -> bool {
        self.sealed && self.d.settled() >= self.d.records
    }
}

/// One receipt's shared state.
pub(crate) struct ReceiptState {
    id: u64,
    tally: Mutex<Tally>,
    resolved_cv: Condvar,
    /// Wakes async waiters (executor-agnostic).
    resolved_notify: tokio::sync::Notify,
    /// The table to leave once resolved.
    table: Weak<Mutex<HashMap<u64, Arc<ReceiptState>>>>,
}

impl ReceiptState {
    /// Settles `n` of this receipt's records as `fate`.
    pub(crate) fn settle(&self, fate: Fate<'_>, n: u64) {
        if n == 0 {
            return;
        }
        let mut t = self.tally.lock();
        let d = &mut t.d;
        let message = match fate {
            Fate::Delivered => {
                d.delivered += n;
                None
            }
            Fate::Rejected(m) => {
                d.rejected += n;
                Some(m)
            }
            Fate::Dropped(r) => {
                d.dropped.add(r, n);
                None
            }
            Fate::Failed(r, m) => {
                d.failed.add(r, n);
                m
            }
        };
        if let (None, Some(m)) = (&d.message, message) {
            if !m.is_empty() {
                d.message = Some(crate::error::printable(m));
            }
        }
        debug_assert!(
            !t.sealed || t.d.settled() <= t.d.records,
            "receipt over-settled"
        );
        if t.done() {
            drop(t);
            self.resolve();
        }
    }

    /// Ends the call that records: `records` were offered under it.
    pub(crate) fn seal(&self, records: u64) {
        let mut t = self.tally.lock();
        t.d.records = records;
        t.sealed = true;
        if t.done() {
            drop(t);
            self.resolve();
        }
    }

    fn resolve(&self) {
        if let Some(table) = self.table.upgrade() {
            table.lock().remove(&self.id);
        }
        self.resolved_cv.notify_all();
        self.resolved_notify.notify_waiters();
    }

    fn resolved(&self) -> Option<Delivery> {
        let t = self.tally.lock();
        t.done().then(|| t.d.clone())
    }
}

/// The receipts with records still on their way, by id.
pub(crate) struct ReceiptTable {
    next: AtomicU64,
    live: Arc<Mutex<HashMap<u64, Arc<ReceiptState>>>>,
}

impl ReceiptTable {
    pub(crate) fn new() -> ReceiptTable {
        ReceiptTable {
            next: AtomicU64::new(1),
            live: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A receipt, registered under a fresh id until it resolves (after
    /// `seal`). This is the one allocation per receipt.
    pub(crate) fn open(&self) -> Receipt {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ReceiptState {
            id,
            tally: Mutex::new(Tally {
                d: Delivery::default(),
                sealed: false,
            }),
            resolved_cv: Condvar::new(),
            resolved_notify: tokio::sync::Notify::new(),
            table: Arc::downgrade(&self.live),
        });
        self.live.lock().insert(id, state.clone());
        Receipt { state }
    }

    /// The receipt registered under `id`, if it has not resolved.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ReceiptState>> {
        self.live.lock().get(&id).cloned()
    }
}

/// Waits for the delivery of the records of one `record_*_acked` call.
///
/// Semantics are at-least-once: `delivered` counts records in requests the
/// receiver acknowledged; a request retried after a lost answer may have
/// reached the receiver twice. Cheap to clone; dropping it does not affect
/// the records.
#[derive(Clone)]
pub struct Receipt {
    state: Arc<ReceiptState>,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt")
            .field("id", &self.state.id)
            .field("delivery", &self.state.tally.lock().d)
            .finish()
    }
}

impl Receipt {
    pub(crate) fn id(&self) -> u64 {
        self.state.id
    }

    pub(crate) fn state(&self) -> &ReceiptState {
        &self.state
    }

    /// The outcome, if every record is settled.
    pub fn try_get(&self) -> Option<Delivery> {
        self.state.resolved()
    }

    /// Blocks until every record is settled or `timeout` passes (`None`).
    pub fn wait(&self, timeout: Duration) -> Option<Delivery> {
        let until = crate::clock::deadline_after(timeout);
        let mut t = self.state.tally.lock();
        while !t.done() {
            if self.state.resolved_cv.wait_until(&mut t, until).timed_out() {
                break;
            }
        }
        t.done().then(|| t.d.clone())
    }

    /// Resolves when every record is settled. Runs on any executor; it
    /// holds no lock across an await. Cancellation-safe: dropping the
    /// future changes nothing, and another wait can follow.
    pub async fn delivered(&self) -> Delivery {
        loop {
            let notified = self.state.resolved_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(d) = self.state.resolved() {
                return d;
            }
            notified.await;
        }
    }

    /// What is known so far: the fates settled until now (`records` is
    /// final once the recording call returned).
    pub fn progress(&self) -> Delivery {
        self.state.tally.lock().d.clone()
    }

    /// Whether the outcome is in, without waiting.
    pub fn is_resolved(&self) -> bool {
        self.state.resolved().is_some()
    }
}

/// Shares of receipts carried by a batch or a request: each receipt with
/// how many of its records it holds, in arrival order. Settles what is
/// left as a shutdown loss when dropped unsettled.
#[derive(Default)]
pub(crate) struct Shares(Vec<(Arc<ReceiptState>, u64)>);

impl Shares {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds one record of receipt `id`, looked up in `table` only when it
    /// differs from the last record's.
    pub(crate) fn add(&mut self, table: &ReceiptTable, id: u64) {
        if let Some((s, n)) = self.0.last_mut() {
            if s.id == id {
                *n += 1;
                return;
            }
        }
        if let Some(s) = table.get(id) {
            self.0.push((s, 1));
        }
    }

    /// Settles every share as `fate`.
    pub(crate) fn settle(&mut self, fate: Fate<'_>) {
        for (s, n) in self.0.drain(..) {
            s.settle(fate, n);
        }
    }

    /// Settles an acknowledged request: `rejected` of its records were
    /// refused by the receiver (see [`Delivery::rejected`]).
    pub(crate) fn settle_answered(&mut self, rejected: u64, message: &str) {
        for (s, n) in self.0.drain(..) {
            let r = rejected.min(n);
            s.settle(Fate::Rejected(message), r);
            s.settle(Fate::Delivered, n - r);
        }
    }
}

impl Drop for Shares {
    fn drop(&mut self) {
        self.settle(Fate::Failed(FailReason::Shutdown, None));
    }
}
