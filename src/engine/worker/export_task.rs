//! One export request's life on its worker's thread: the circuit breaker
//! lets it out, the egress pacing spaces it, the exporter sends it, and the
//! answer is counted: acknowledged, rejected in part, retried with backoff
//! (in the retry queue, where newer data may evict it), or failed for good.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::RetryQueue;
use crate::engine::receipt::{Fate, Shares};
use crate::engine::Engine;
use crate::export::{Backoff, ExportError, Exporter};
use crate::flow::breaker::{Admit, Breaker};
use crate::flow::concurrency::{Aimd, Outcome};
use crate::record::Signal;
use crate::stats::FailReason;

/// What export tasks share with their worker.
pub(super) struct ExportContext {
    pub(super) inner: Arc<Engine>,
    pub(super) idx: usize,
    /// One exporter per signal, each with its own endpoint, path, headers
    /// and compression.
    pub(super) exporters: RefCell<Vec<Rc<Exporter>>>,
    /// Outstanding requests: sequence number -> records.
    pub(super) outstanding: RefCell<BTreeMap<u64, u64>>,
    /// The limit on requests in flight (`in_flight_requests` in the
    /// worker's counters): fixed, or moved by the AIMD controller.
    pub(super) fixed_limit: usize,
    pub(super) aimd: RefCell<Option<Aimd>>,
    /// Signalled when a request ends or the limit grows.
    pub(super) slot_freed: Notify,
    /// One circuit breaker per signal: each signal may have its own
    /// endpoint, and a dead logs endpoint must not hold spans back.
    pub(super) breakers: RefCell<Vec<Breaker>>,
    /// A new lane's breaker.
    pub(super) breaker: Breaker,
    /// This worker's counts per lane.
    pub(super) endpoints: RefCell<Vec<Arc<crate::stats::EndpointCounters>>>,
    /// The lanes as the worker last saw them.
    pub(super) table: RefCell<Arc<crate::engine::lanes::LaneTable>>,
    /// Signalled when a breaker's probe has its answer.
    pub(super) breaker_changed: Notify,
    /// Requests sleeping before a retry, oldest first, each with the signal
    /// that evicts it (`RetryQueue::DropOldest`).
    pub(super) retrying: RefCell<BTreeMap<u64, (usize, Rc<Notify>)>>,
    /// Requests in flight per lane: each endpoint has the worker's limit of
    /// request slots to itself, so one that stops answering cannot take
    /// the others' slots.
    pub(super) lane_in_flight: RefCell<Vec<usize>>,
    /// Batches sent since the batch target last moved (automatic batch
    /// growth).
    pub(super) batches: std::cell::Cell<SentBatches>,
    /// Automatic batch growth quadruples the target (rather than adding a
    /// quarter) until the first time it shrinks, and again once it is back
    /// at `max_batch_items`: the batch's own slow start.
    pub(super) batch_slow_start: std::cell::Cell<bool>,
}

/// Batches sent since the batch target last moved: how many, how many of
/// them left full, the records they held, and their requests' bytes before
/// and after compression.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SentBatches {
    pub(super) sent: u64,
    pub(super) full: u64,
    pub(super) records: u64,
    pub(super) raw: u64,
    pub(super) wire: u64,
}

impl ExportContext {
    pub(super) fn counters(&self) -> &crate::stats::WorkerCounters {
        &self.inner.workers[self.idx].counters
    }

    /// This worker's counts for endpoint `lane`.
    pub(super) fn endpoint(&self, lane: usize) -> Arc<crate::stats::EndpointCounters> {
        self.endpoints.borrow()[lane].clone()
    }

    /// Lane `lane`'s settings.
    pub(super) fn settings(&self, lane: usize) -> Arc<crate::export::ExportSettings> {
        self.table.borrow().exports[lane].clone()
    }

    pub(super) fn now_ns(&self) -> u64 {
        self.inner.epoch.elapsed().as_nanos() as u64
    }

    pub(super) fn limit(&self) -> usize {
        match &*self.aimd.borrow() {
            Some(a) => a.limit(),
            None => self.fixed_limit,
        }
    }

    /// Whether `lane` has a free request slot.
    pub(super) fn has_slot(&self, lane: usize) -> bool {
        self.lane_in_flight.borrow()[lane] < self.limit()
    }

    /// Drops the request that has waited longest for its retry (of `lane`
    /// only, if given). Returns whether there was one.
    pub(super) fn evict_oldest(&self, lane: Option<usize>) -> bool {
        let mut retrying = self.retrying.borrow_mut();
        let seq = retrying
            .iter()
            .find(|(_, (l, _))| lane.is_none_or(|want| *l == want))
            .map(|(seq, _)| *seq);
        match seq.and_then(|s| retrying.remove(&s)) {
            Some((_, signal)) => {
                // notify_one keeps the permit if the task is not polled yet.
                signal.notify_one();
                true
            }
            None => false,
        }
    }

    /// Puts request `seq` in the retry queue (leave it with
    /// `retrying.remove`); the returned signal fires if it is evicted.
    pub(super) fn enter_retry_queue(&self, seq: u64, lane: usize) -> Rc<Notify> {
        let signal = Rc::new(Notify::new());
        self.retrying
            .borrow_mut()
            .insert(seq, (lane, signal.clone()));
        if self.inner.config.flow.retry_queue == RetryQueue::DropOldest {
            // A dispatch waiting for a slot may now evict this request.
            self.slot_freed.notify_one();
        }
        signal
    }

    /// Waits until the circuit breaker lets request `seq` out, or
    /// `give_up`. While it waits, the request is in the retry queue: under
    /// `RetryQueue::DropOldest` newer data may evict it.
    pub(super) async fn admit(&self, lane: usize, seq: u64, give_up: Instant) -> Admission {
        loop {
            let admit = self.breakers.borrow_mut()[lane].admit(self.now_ns());
            let until = match admit {
                Admit::Go => return Admission::Send { probe: false },
                Admit::Probe => {
                    self.publish_breaker();
                    return Admission::Send { probe: true };
                }
                Admit::WaitUntil(ns) => Some(self.inner.epoch + Duration::from_nanos(ns)),
                Admit::WaitProbe => None,
            };
            let evict = self.enter_retry_queue(seq, lane);
            let evicted = tokio::select! {
                _ = evict.notified() => true,
                _ = self.breaker_changed.notified(), if until.is_none() => false,
                _ = tokio::time::sleep_until(until.unwrap_or(give_up).min(give_up).into()) => false,
            };
            self.retrying.borrow_mut().remove(&seq);
            if evicted {
                return Admission::Evicted;
            }
            if Instant::now() >= give_up {
                return Admission::GaveUp;
            }
        }
    }

    /// Feeds an attempt's result to the circuit breaker and the concurrency
    /// controller. `no_answer`: the attempt got no answer (see
    /// `ExportError::no_answer`).
    pub(super) fn on_attempt(
        &self,
        lane: usize,
        probe: bool,
        rtt: Duration,
        outcome: Outcome,
        no_answer: bool,
    ) {
        let now = self.now_ns();
        let authority = self.settings(lane).endpoint.authority.clone();
        {
            let mut breakers = self.breakers.borrow_mut();
            let b = &mut breakers[lane];
            let (state, opened) = (b.state(), b.opened());
            if no_answer {
                b.on_failure(now, probe);
            } else {
                b.on_success();
            }
            if b.opened() > opened {
                self.counters()
                    .breaker_opened
                    .fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "otlpflow: endpoint {authority} not answering; circuit breaker open, probing it"
                );
            }
            if b.state() != state {
                if state != crate::flow::breaker::State::Closed
                    && b.state() == crate::flow::breaker::State::Closed
                {
                    log::info!(
                        "otlpflow: endpoint {authority} answers again; circuit breaker closed"
                    );
                }
                self.breaker_changed.notify_waiters();
            }
        }
        self.publish_breaker();
        if let Some(a) = self.aimd.borrow_mut().as_mut() {
            let before = a.limit();
            // Under system memory pressure an answer does not count toward
            // growing the limit (throttles still shrink it).
            let outcome = match outcome {
                crate::flow::concurrency::Outcome::Answered
                    if self.inner.under_memory_pressure() =>
                {
                    crate::flow::concurrency::Outcome::Other
                }
                o => o,
            };
            a.on_response(now, rtt.as_nanos() as u64, outcome);
            if a.limit() != before {
                self.counters()
                    .concurrency_limit
                    .store(a.limit() as u64, Ordering::Relaxed);
            }
            if a.limit() > before {
                self.slot_freed.notify_one();
            }
        }
    }

    /// Publishes which breakers are not closed: per endpoint, how many,
    /// and the signals all of whose endpoints are cut off (bit per signal).
    pub(super) fn publish_breaker(&self) {
        let w = &self.inner.workers[self.idx];
        let (mut open, mut closed_somewhere, mut count) = (0u64, 0u64, 0u64);
        let table = self.table.borrow();
        let endpoints = self.endpoints.borrow();
        for (lane, b) in self.breakers.borrow().iter().enumerate() {
            let not_closed = b.state() != crate::flow::breaker::State::Closed;
            let bit = table.exports[lane].signal.bit();
            endpoints[lane]
                .breaker_open
                .store(not_closed, Ordering::Relaxed);
            if not_closed {
                open |= bit;
                count += 1;
            } else {
                closed_somewhere |= bit;
            }
        }
        let c = &w.counters;
        c.breaker_state
            .store(open & !closed_somewhere, Ordering::Relaxed);
        c.breakers_open.store(count, Ordering::Relaxed);
    }
}

/// What the circuit breaker let a request do.
pub(super) enum Admission {
    /// Send (`probe`: as the breaker's half-open probe).
    Send { probe: bool },
    /// The retry budget (or shutdown's deadline) ran out first.
    GaveUp,
    /// Evicted while waiting (`RetryQueue::DropOldest`).
    Evicted,
}

/// Bytes of one request held against the memory budget until the request
/// ends, however it ends (a task dropped at the shutdown deadline too).
struct Charge<'a> {
    inner: &'a Engine,
    n: u64,
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.inner.release_memory(self.n);
        }
    }
}

/// One export request, as its task owns it.
pub(super) struct ExportRequest {
    /// Commit times of sampled records in it (end-to-end latency).
    pub(super) samples: Vec<u64>,
    pub(super) signal: Signal,
    /// The signal's endpoint it goes to.
    pub(super) lane: usize,
    pub(super) seq: u64,
    pub(super) chunks: Vec<Bytes>,
    pub(super) items: u64,
    /// Bytes on the wire (for egress pacing).
    pub(super) wire: u64,
    /// Bytes held against the memory budget.
    pub(super) charge: u64,
    /// The delivery receipts whose records it carries.
    pub(super) receipts: Shares,
}

impl ExportRequest {
    /// Counts the request's records as failed for `reason`, and settles
    /// its receipts so (with `message`, the last error, if any).
    fn fail(&mut self, shared: &ExportContext, reason: FailReason, message: Option<&str>) {
        shared.counters().fail(reason, self.items);
        shared
            .endpoint(self.lane)
            .failed
            .fetch_add(self.items, Ordering::Relaxed);
        self.receipts.settle(Fate::Failed(reason, message));
    }
}

/// Sends one request, retrying transient failures with backoff until the
/// retry budget or the shutdown deadline runs out, and counts the outcome.
/// Each attempt first passes the circuit breaker and the egress pacing.
pub(super) async fn export_task(shared: &ExportContext, mut req: ExportRequest, seed: u64) {
    let inner = &shared.inner;
    let cfg = &inner.config;
    let counters = shared.counters();
    let _charge = Charge {
        inner,
        n: req.charge,
    };
    let items = req.items;
    let started = Instant::now();
    let mut backoff = Backoff::new(&cfg.retry, seed);
    let budget_end = crate::clock::saturating_add(started, cfg.retry.max_elapsed);
    // Out of time: the retry budget, or shutdown's deadline if that comes
    // first (counted as a shutdown loss, as `shutdown` documents).
    let out_of_time = || match inner.stop_deadline() {
        Some(d) if d <= budget_end => FailReason::Shutdown,
        _ => FailReason::Exhausted,
    };
    // The last attempt's error, for the receipts of a request that fails.
    let mut last_error: Option<String> = None;
    loop {
        let mut give_up = budget_end;
        if let Some(d) = inner.stop_deadline() {
            give_up = give_up.min(d);
        }
        if spool_if_refused(shared, &req) {
            return;
        }
        let probe = match shared.admit(req.lane, req.seq, give_up).await {
            Admission::Send { probe } => probe,
            Admission::GaveUp => {
                // The endpoint stayed down (breaker open) past the budget.
                req.fail(shared, out_of_time(), last_error.as_deref());
                return;
            }
            Admission::Evicted => {
                // Evicted for newer data: to disk rather than lost, if
                // there is a spool.
                if !spool_now(shared, &req) {
                    req.fail(shared, FailReason::Evicted, last_error.as_deref());
                }
                return;
            }
        };
        if let Some(bucket) = &inner.egress {
            let wait = bucket.reserve(req.wire);
            if !wait.is_zero() {
                let until = crate::clock::deadline_after(wait);
                tokio::time::sleep_until(until.min(give_up).into()).await;
                if until > give_up {
                    req.fail(shared, out_of_time(), last_error.as_deref());
                    return;
                }
            }
        }
        counters.requests.fetch_add(1, Ordering::Relaxed);
        shared
            .endpoint(req.lane)
            .requests
            .fetch_add(1, Ordering::Relaxed);
        counters
            .signals_used
            .fetch_or(req.signal.bit(), Ordering::Relaxed);
        let t0 = Instant::now();
        let exporter = shared.exporters.borrow()[req.lane].clone();
        let result = match tokio::time::timeout(
            shared.settings(req.lane).timeout,
            exporter.send(&req.chunks),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ExportError::Timeout),
        };
        let rtt = t0.elapsed();
        match result {
            Ok(ack) => {
                shared.on_attempt(req.lane, probe, rtt, Outcome::Answered, false);
                let latency = rtt.as_nanos() as u64;
                counters.export_latency.record(latency);
                let now = inner.epoch.elapsed().as_nanos() as u64;
                for s in &req.samples {
                    counters.e2e_latency.record(now.saturating_sub(*s));
                }
                super::batch_size::adapt_batch(shared, latency, inner.under_memory_pressure());
                counters.consecutive_failures.store(0, Ordering::Relaxed);
                let rejected = ack.rejected.min(items);
                counters.export(req.signal, items - rejected);
                shared
                    .endpoint(req.lane)
                    .exported
                    .fetch_add(items - rejected, Ordering::Relaxed);
                req.receipts.settle_answered(rejected, &ack.message);
                if rejected > 0 {
                    counters.reject(rejected);
                    *inner.last_error.lock() = Some(format!(
                        "partial success: {}",
                        crate::error::printable(&ack.message)
                    ));
                }
                return;
            }
            Err(e) => {
                let outcome = if e.throttled() {
                    Outcome::Throttled
                } else if e.no_answer() {
                    Outcome::Other
                } else {
                    Outcome::Answered
                };
                shared.on_attempt(req.lane, probe, rtt, outcome, e.no_answer());
                counters.request_errors.fetch_add(1, Ordering::Relaxed);
                shared
                    .endpoint(req.lane)
                    .request_errors
                    .fetch_add(1, Ordering::Relaxed);
                counters
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed);
                let message = if e.refuses_encoding() {
                    format!(
                        "configuration error: the receiver refuses compression {:?} ({e}); use none or gzip",
                        shared.settings(req.lane).compression.token().unwrap_or("none")
                    )
                } else {
                    e.to_string()
                };
                *inner.last_error.lock() = Some(message.clone());
                last_error = Some(message);
                // The server's RetryInfo or Retry-After, but never less
                // than our backoff (as the Collector's and Go's exporters
                // do): a receiver answering `Retry-After: 0` to every
                // request had each one retried at once, over and over, as
                // fast as the round trip allowed.
                let backoff_delay = backoff.next_delay();
                let delay = e
                    .retry_after()
                    .map_or(backoff_delay, |d| d.max(backoff_delay));
                if e.retryable() && crate::clock::deadline_after(delay) < give_up {
                    // Memory short (producers waiting for it, or half the
                    // budget taken, where `DropNewest` would soon refuse
                    // records): a request that must wait for its retry
                    // waits on disk instead, if it can.
                    if memory_short(inner) && spool_now(shared, &req) {
                        return;
                    }
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    if wait_for_retry(shared, req.seq, req.lane, delay).await {
                        continue;
                    }
                    if !spool_now(shared, &req) {
                        req.fail(shared, FailReason::Evicted, last_error.as_deref());
                    }
                    return;
                }
                let reason = if e.retryable() {
                    out_of_time()
                } else {
                    FailReason::Permanent
                };
                req.fail(shared, reason, last_error.as_deref());
                return;
            }
        }
    }
}

/// Writes `req` to the disk spool, if there is one, the request may go
/// there (it carries no delivery receipt: those wait in memory) and its
/// endpoint's circuit breaker refuses requests now. Returns whether it did;
/// the records are then the spool's. (Requests also go to the spool when
/// evicted from the retry queue, and instead of waiting for a retry while
/// producers wait for memory.)
fn spool_if_refused(shared: &ExportContext, req: &ExportRequest) -> bool {
    shared.breakers.borrow()[req.lane].refuses(shared.now_ns()) && spool_now(shared, req)
}

/// Whether fresh records are short of memory: producers wait for it, or
/// half the budget is taken.
fn memory_short(inner: &Engine) -> bool {
    inner.budget_waiters.load(Ordering::Relaxed) > 0
        || inner
            .budget
            .as_ref()
            .is_some_and(|b| b.used().saturating_mul(2) >= b.limit())
}

/// Writes `req` to the disk spool, if there is one and the request may go
/// there. Returns whether it did.
fn spool_now(shared: &ExportContext, req: &ExportRequest) -> bool {
    let Some(spool) = &shared.inner.spool else {
        return false;
    };
    if !req.receipts.is_empty() {
        return false;
    }
    let request = match &req.chunks[..] {
        [one] => one.clone(),
        chunks => {
            let mut r = Vec::with_capacity(req.wire as usize);
            for c in chunks {
                r.extend_from_slice(c);
            }
            r.into()
        }
    };
    let entry = crate::spool::Entry {
        signal: req.signal,
        key: lane_key(&shared.settings(req.lane)),
        items: req.items as u32,
        request,
    };
    match spool.append(&entry) {
        Ok(()) => {
            shared.counters().spool(req.items);
            true
        }
        Err(crate::spool::SpoolError::Full) => false,
        Err(crate::spool::SpoolError::Io(e)) => {
            spool.counters.errors.fetch_add(1, Ordering::Relaxed);
            *shared.inner.last_error.lock() = Some(format!("spool: {e}"));
            false
        }
    }
}

/// What a spooled request records as its endpoint: `host:port` and path.
pub(super) fn lane_key(s: &crate::export::ExportSettings) -> String {
    format!("{}{}", s.endpoint.address(), s.http_path)
}

/// Sleeps before a retry in the retry queue, where newer data may evict
/// the request (`RetryQueue::DropOldest`). Returns false if it was evicted.
async fn wait_for_retry(shared: &ExportContext, seq: u64, lane: usize, delay: Duration) -> bool {
    let signal = shared.enter_retry_queue(seq, lane);
    let evicted = tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = signal.notified() => true,
    };
    shared.retrying.borrow_mut().remove(&seq);
    !evicted
}
