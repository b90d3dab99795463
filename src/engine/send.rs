//! Two ways to record that the plain hot path does not offer: with a
//! delivery receipt (`record_*_acked`), and as a future that waits for room
//! instead of parking its thread (`send`, `send_acked`).
//!
//! Both go through the same record path as `record_span`; the receipt's id
//! rides in front of each record (see `receipt`), and the async path asks
//! the record path not to park (`record_flagged::<false>`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::receipt::{Fate, Receipt, RECEIPT_BIT, RECEIPT_PREFIX};
use super::{BatchResult, Engine, Pipeline, Scope};
use crate::config::Policy;
use crate::error::RecordError;
use crate::record::{LogRecord, MetricPoint, Signal, Span};
use crate::stats::DropReason;

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::record::Span<'_> {}
    impl Sealed for crate::record::LogRecord<'_> {}
    impl Sealed for crate::record::MetricPoint<'_> {}
}

/// A record a pipeline takes: [`Span`], [`LogRecord`] or [`MetricPoint`].
/// Implemented by this crate only.
pub trait Recordable: sealed::Sealed {
    /// The signal the record belongs to.
    #[doc(hidden)]
    const SIGNAL: Signal;
    /// Whether the record may be encoded (a log's severity, a point's
    /// shape); an invalid one is refused as `Invalid`.
    #[doc(hidden)]
    fn is_valid(&self) -> bool;
    #[doc(hidden)]
    fn encoded_len(&self) -> usize;
    #[doc(hidden)]
    fn encode(&self, buf: &mut [u8]);
}

impl Recordable for Span<'_> {
    const SIGNAL: Signal = Signal::Traces;
    fn is_valid(&self) -> bool {
        self.has_ids()
    }
    fn encoded_len(&self) -> usize {
        Span::encoded_len(self)
    }
    fn encode(&self, buf: &mut [u8]) {
        Span::encode(self, buf)
    }
}

impl Recordable for LogRecord<'_> {
    const SIGNAL: Signal = Signal::Logs;
    fn is_valid(&self) -> bool {
        self.severity_number.is_valid()
    }
    fn encoded_len(&self) -> usize {
        LogRecord::encoded_len(self)
    }
    fn encode(&self, buf: &mut [u8]) {
        LogRecord::encode(self, buf)
    }
}

impl Recordable for MetricPoint<'_> {
    const SIGNAL: Signal = Signal::Metrics;
    fn is_valid(&self) -> bool {
        crate::record::metric::invalid(self).is_none()
    }
    fn encoded_len(&self) -> usize {
        MetricPoint::encoded_len(self)
    }
    fn encode(&self, buf: &mut [u8]) {
        MetricPoint::encode(self, buf)
    }
}

impl Engine {
    /// Records one record, with receipt `receipt` in front of it if given.
    #[inline]
    fn record_one<const PARK: bool, R: Recordable>(
        &self,
        scope: &Scope,
        r: &R,
        receipt: Option<u64>,
    ) -> Result<(), RecordError> {
        if !r.is_valid() {
            return Err(self.refuse_offered(R::SIGNAL, RecordError::Invalid));
        }
        match receipt {
            None => {
                self.record_flagged::<PARK>(scope, R::SIGNAL, r.encoded_len(), 0, |b| r.encode(b))
            }
            Some(id) => self.record_flagged::<PARK>(
                scope,
                R::SIGNAL,
                r.encoded_len() + RECEIPT_PREFIX,
                RECEIPT_BIT,
                |b| {
                    let (prefix, record) = b.split_at_mut(RECEIPT_PREFIX);
                    prefix.copy_from_slice(&id.to_le_bytes());
                    r.encode(record)
                },
            ),
        }
    }

    /// Records one record without parking the thread: where `Block` would
    /// wait, the future waits for a drain, a release of memory or the end
    /// of system memory pressure, up to `Block`'s wait.
    async fn send_one<R: Recordable>(
        &self,
        scope: &Scope,
        r: &R,
        receipt: Option<u64>,
    ) -> Result<(), RecordError> {
        let mut deadline: Option<Instant> = None;
        loop {
            let e = match self.record_one::<false, R>(scope, r, receipt) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            // Under DropNewest these were refusals, counted; under Block
            // they are what the record waits for, not counted yet.
            let (true, Policy::Block { max_wait }) = (waits_for_room(e), self.config.policy) else {
                return Err(e);
            };
            let until = *deadline.get_or_insert_with(|| crate::clock::deadline_after(max_wait));
            if Instant::now() >= until {
                // Counted once, like a parked record at its deadline.
                return Err(self.refuse_offered(R::SIGNAL, e));
            }
            let waiter = AsyncWaiter::register(self);
            let notified = self.async_room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Workers drain (and release memory) only while awake.
            for w in self.workers.iter() {
                if w.mode.swap(super::AWAKE, Ordering::SeqCst) != super::AWAKE {
                    w.notify.notify_one();
                }
            }
            // The last try after registering: room made before it is seen
            // here, room made after it wakes the future.
            match self.record_one::<false, R>(scope, r, receipt) {
                Err(e) if waits_for_room(e) => {}
                done => return done,
            }
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            } else {
                notified.await;
            }
            drop(waiter);
        }
    }
}

/// Whether the async path waits on `e` (under `Block`).
fn waits_for_room(e: RecordError) -> bool {
    matches!(
        e,
        RecordError::Full | RecordError::Memory | RecordError::SystemMemory
    )
}

/// One async sender counted in `async_waiters` while it waits; the count
/// goes down however the wait ends (the future may be dropped).
struct AsyncWaiter<'a>(&'a Engine);

impl<'a> AsyncWaiter<'a> {
    fn register(e: &'a Engine) -> AsyncWaiter<'a> {
        // SeqCst pairs with the fence of whoever makes room (see
        // `Engine::wake_async`).
        e.async_waiters.fetch_add(1, Ordering::SeqCst);
        AsyncWaiter(e)
    }
}

impl Drop for AsyncWaiter<'_> {
    fn drop(&mut self) {
        self.0.async_waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pipeline {
    /// Records `records` under one delivery receipt: the returned
    /// [`Receipt`] resolves once each of them is delivered, rejected by the
    /// receiver, refused at ingest or lost, and says which. One allocation
    /// per call (the receipt), none per record; records without a receipt
    /// pay nothing for this.
    pub fn record_acked<R: Recordable>(&self, scope: &Scope, records: &[R]) -> Receipt {
        let mut acked = self.acked();
        for r in records {
            let _ = acked.record(scope, r);
        }
        acked.finish()
    }

    /// Starts a receipt to record into one record at a time (of any
    /// signals and scopes), for callers that do not hold their records as
    /// one slice (a binding converting each in turn).
    pub fn acked(&self) -> Acked<'_> {
        let engine = self.engine();
        Acked {
            engine,
            receipt: engine.receipts.open(),
            records: 0,
        }
    }

    /// [`Pipeline::record_acked`] for one span.
    pub fn record_span_acked(&self, scope: &Scope, span: &Span<'_>) -> Receipt {
        self.record_acked(scope, std::slice::from_ref(span))
    }

    /// [`Pipeline::record_acked`] for spans.
    pub fn record_batch_acked(&self, scope: &Scope, spans: &[Span<'_>]) -> Receipt {
        self.record_acked(scope, spans)
    }

    /// [`Pipeline::record_acked`] for log records.
    pub fn record_logs_acked(&self, scope: &Scope, logs: &[LogRecord<'_>]) -> Receipt {
        self.record_acked(scope, logs)
    }

    /// [`Pipeline::record_acked`] for metric points.
    pub fn record_metrics_acked(&self, scope: &Scope, points: &[MetricPoint<'_>]) -> Receipt {
        self.record_acked(scope, points)
    }

    /// Records `records` as a future. Under `Policy::Block`, where
    /// `record_span` would park its thread for ring space or memory, the
    /// future waits instead (up to the same `max_wait`), so an executor's
    /// thread keeps running its other tasks. Under `DropNewest` it never
    /// waits.
    ///
    /// Cancellation-safe: a record is written whole within one poll or not
    /// at all. Dropping the future keeps the records it already wrote (the
    /// ones before it) and offers none of the rest, which count nowhere.
    /// Its deadline needs tokio's timer; polled outside a tokio runtime
    /// it waits only for room.
    pub async fn send<R: Recordable>(&self, scope: &Scope, records: &[R]) -> BatchResult {
        let engine = self.engine();
        let mut r = BatchResult::default();
        for rec in records {
            match engine.send_one(scope, rec, None).await {
                Ok(()) => r.accepted += 1,
                Err(_) => r.dropped += 1,
            }
        }
        r
    }

    /// [`Pipeline::send`] with a delivery receipt, as
    /// [`Pipeline::record_acked`]. Cancellation-safe as `send` is.
    pub async fn send_acked<R: Recordable>(&self, scope: &Scope, records: &[R]) -> Receipt {
        // Cancelled, `acked` is dropped and seals what it offered, so that
        // the receipt (which nobody holds then) still resolves.
        let mut acked = self.acked();
        for rec in records {
            let result = acked
                .engine
                .send_one(scope, rec, Some(acked.receipt.id()))
                .await;
            acked.offered(result);
        }
        acked.finish()
    }
}

/// A receipt being recorded into ([`Pipeline::acked`]). [`Acked::finish`]
/// (or dropping it) ends it; the receipt resolves once every record
/// offered under it is settled.
pub struct Acked<'p> {
    engine: &'p Engine,
    receipt: Receipt,
    records: u64,
}

impl Acked<'_> {
    /// Records one record under the receipt, as `record_span` would
    /// (refusals are counted in the stats and in the receipt).
    pub fn record<R: Recordable>(&mut self, scope: &Scope, r: &R) -> Result<(), RecordError> {
        let result = self
            .engine
            .record_one::<true, R>(scope, r, Some(self.receipt.id()));
        self.offered(result);
        result
    }

    /// Counts a record of `signal` the caller could not express (a
    /// malformed record from a binding) as refused `Invalid`, in the stats
    /// and in the receipt. Returns the error to hand back.
    pub fn refuse_invalid(&mut self, signal: Signal) -> RecordError {
        let e = self.engine.refuse_offered(signal, RecordError::Invalid);
        self.offered(Err(e));
        e
    }

    fn offered(&mut self, result: Result<(), RecordError>) {
        self.records += 1;
        if let Err(e) = result {
            self.receipt
                .state()
                .settle(Fate::Dropped(DropReason::of(e)), 1);
        }
    }

    /// Ends the receipt and hands it over.
    pub fn finish(self) -> Receipt {
        self.receipt.clone()
    }
}

impl Drop for Acked<'_> {
    fn drop(&mut self) {
        self.receipt.state().seal(self.records);
    }
}
