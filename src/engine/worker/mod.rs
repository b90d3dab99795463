//! A worker thread: drains its shards into a batch (the one copy out of the
//! rings), closes the batch at `max_batch_items`, `max_batch_bytes` or
//! `linger`, frames and compresses it, and exports it on its own
//! current-thread tokio runtime with up to `max_in_flight` requests at once.
//! It shares nothing with other workers but the pipeline's counters.
//!
//! Flush protocol: a flush request (epoch E) makes the worker note each of
//! its rings' tails, drain up to them, send the partial batch, and note the
//! sequence number of the next request; flush E is done when no request
//! before that number is outstanding.

mod batch_size;
mod dispatch;
mod drain;
mod export_task;
mod monitor;
mod replay;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::batch::Batch;
use super::lanes::LaneTable;
use super::receipt::{Fate, Shares};
use super::{Engine, AWAKE, IDLE, LINGER};
use crate::config::RetryQueue;
use crate::export::Exporter;
use crate::flow::breaker::Breaker;
use crate::flow::concurrency::Aimd;
use crate::otlp::compress::Compressor;
use crate::record::{PerSignal, Signal};
use crate::ring::Consumer;
use crate::stats::FailReason;
use export_task::ExportContext;
use monitor::{CpuMeter, LossLog};

/// How long an idle worker sleeps before looking at its rings anyway (a
/// safety net; producers, flush, shutdown and memory waiters wake it
/// sooner). Each idle wake-up costs CPU at a trickle: 50 ms cost about
/// 0.4% of a core for an idle pipeline, so it is 250 ms.
const IDLE_POLL: Duration = Duration::from_millis(250);

struct PendingFlush {
    epoch: u64,
    tails: Vec<u64>,
    /// Set once the rings are drained to `tails` and the batch is sent: the
    /// flush waits for every request numbered below it.
    boundary: Option<u64>,
}

struct Worker {
    inner: Arc<Engine>,
    idx: usize,
    consumers: Vec<(usize, Consumer)>,
    /// One batch per lane (a signal's endpoint).
    batches: Vec<Batch>,
    /// The receipts each batch carries records of.
    shares: Vec<Shares>,
    scope_cache: Vec<Option<Bytes>>,
    compressors: Vec<Compressor>,
    shared: Rc<ExportContext>,
    /// Bytes of the records in each batch, held against the memory budget.
    charged: Vec<u64>,
    /// Each signal's round-robin turn over its endpoints.
    turns: PerSignal<usize>,
    /// The spool segments in replay, oldest first (worker 0).
    replaying: std::collections::VecDeque<replay::Replay>,
    /// Bytes of replayed requests in flight (at most half the budget).
    replay_bytes: Rc<std::cell::Cell<u64>>,
    /// The lanes as this worker last saw them, and their version.
    table: Arc<LaneTable>,
    table_version: u64,
    /// End-to-end latency samples (commit times) taken from the shards,
    /// handed to the next request.
    samples: Vec<u64>,
    /// Worker 0 watches for loss episodes.
    loss: Option<LossLog>,
    /// With `worker_cpu_budget`.
    cpu: Option<CpuMeter>,
    next_seq: u64,
    flush: Option<PendingFlush>,
    flush_done: u64,
    rng: u64,
}

pub(super) fn run(
    inner: Arc<Engine>,
    idx: usize,
    consumers: Vec<(usize, Consumer)>,
    runtime: tokio::runtime::Runtime,
) {
    crate::threads::mark_own();
    let cfg = &inner.config;
    let now_ns = inner.epoch.elapsed().as_nanos() as u64;
    let aimd = cfg.flow.adaptive_concurrency.map(|(min, max)| {
        let mut a = Aimd::starting_at(min, max, cfg.aimd_start, now_ns);
        if cfg.flow.worker_cpu_budget.is_some() {
            a = a.await_load_verdict();
        }
        if cfg.auto_concurrency {
            a.grow_only_above(crate::flow::concurrency::LONG_ROUND_TRIP_NS)
        } else {
            a
        }
    });
    let b = &cfg.flow.breaker;
    let breaker = Breaker::new(
        b.threshold,
        b.min_open.as_nanos() as u64,
        b.max_open.as_nanos() as u64,
    );
    let limit = aimd.as_ref().map_or(cfg.max_in_flight, |a| a.limit());
    inner.workers[idx]
        .counters
        .concurrency_limit
        .store(limit as u64, Ordering::Relaxed);
    let table = inner.lanes.current();
    let mut worker = Worker {
        compressors: Vec::new(),
        shared: Rc::new(ExportContext {
            inner: inner.clone(),
            idx,
            exporters: RefCell::new(Vec::new()),
            outstanding: RefCell::new(BTreeMap::new()),
            fixed_limit: cfg.max_in_flight,
            aimd: RefCell::new(aimd),
            slot_freed: Notify::new(),
            breaker,
            breakers: RefCell::new(Vec::new()),
            breaker_changed: Notify::new(),
            retrying: RefCell::new(BTreeMap::new()),
            batches: Default::default(),
            batch_slow_start: std::cell::Cell::new(true),
            lane_in_flight: RefCell::new(Vec::new()),
            endpoints: RefCell::new(Vec::new()),
            table: RefCell::new(table.clone()),
        }),
        table,
        table_version: u64::MAX,
        replaying: Default::default(),
        replay_bytes: Rc::default(),
        charged: Vec::new(),
        turns: PerSignal::default(),
        samples: Vec::new(),
        loss: (idx == 0).then(LossLog::new),
        cpu: cfg.flow.worker_cpu_budget.map(CpuMeter::new),
        inner,
        idx,
        consumers,
        batches: Vec::new(),
        shares: Vec::new(),
        scope_cache: Vec::new(),
        next_seq: 0,
        flush: None,
        flush_done: 0,
        rng: 0x9E37_79B9_7F4A_7C15 ^ (idx as u64 + 1),
    };
    worker.sync_lanes();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, worker.run());
    // Dropping the LocalSet and runtime drops any task abandoned at the
    // shutdown deadline; `abandon` has already counted its records.
}

impl Worker {
    /// Takes up a new version of the lanes: a new lane gets its batch,
    /// compressor, exporter, breaker, request slots and counters here; a
    /// lane given to another endpoint (`Lanes::set`) gets a new exporter,
    /// compressor, breaker and counters, and keeps its batch and requests,
    /// which go to that endpoint.
    fn sync_lanes(&mut self) {
        let version = self.inner.lanes.version();
        if version == self.table_version {
            return;
        }
        let table = self.inner.lanes.current();
        let shared = &self.shared;
        for (lane, s) in table.exports.iter().enumerate().take(self.batches.len()) {
            if Arc::ptr_eq(s, &self.table.exports[lane]) {
                continue;
            }
            self.compressors[lane] = Compressor::new(s.compression, s.compression_level);
            shared.exporters.borrow_mut()[lane] = Rc::new(Exporter::new(s));
            shared.breakers.borrow_mut()[lane] = shared.breaker.clone();
            let counters = Arc::new(crate::stats::EndpointCounters::default());
            self.inner.workers[self.idx].endpoints.lock()[lane] = counters.clone();
            shared.endpoints.borrow_mut()[lane] = counters;
        }
        for s in &table.exports[self.batches.len()..] {
            self.batches.push(match s.signal {
                Signal::Metrics => Batch::for_metrics(),
                _ => Batch::new(),
            });
            self.shares.push(Shares::default());
            self.charged.push(0);
            self.compressors
                .push(Compressor::new(s.compression, s.compression_level));
            shared
                .exporters
                .borrow_mut()
                .push(Rc::new(Exporter::new(s)));
            shared.breakers.borrow_mut().push(shared.breaker.clone());
            shared.lane_in_flight.borrow_mut().push(0);
            let counters = Arc::new(crate::stats::EndpointCounters::default());
            self.inner.workers[self.idx]
                .endpoints
                .lock()
                .push(counters.clone());
            shared.endpoints.borrow_mut().push(counters);
        }
        *shared.table.borrow_mut() = table.clone();
        self.table = table;
        self.table_version = version;
    }

    async fn run(mut self) {
        loop {
            self.sync_lanes();
            self.replay();
            if let Some(l) = self.loss.as_mut() {
                l.check(&self.inner, false);
            }
            self.relieve_memory();
            if let Some(over) = self.cpu.as_mut().and_then(CpuMeter::over) {
                if let Some(a) = self.shared.aimd.borrow_mut().as_mut() {
                    a.set_overloaded(over);
                }
            }
            let drained = self.drain();
            if self.batch_full() {
                if !self.dispatch_ready(true).await {
                    self.wait_for_slot().await;
                }
                continue;
            }
            if self.advance_flush().await {
                continue;
            }
            let inner = self.inner.clone();
            if let Some(d) = inner.stop_deadline() {
                if Instant::now() >= d {
                    self.abandon();
                    self.finish_loss_log();
                    return;
                }
            }
            if inner.stop.load(Ordering::SeqCst)
                && self.flush.is_none()
                && self.flush_done >= inner.flush_requested.load(Ordering::SeqCst)
            {
                self.finish_loss_log();
                return;
            }
            if drained > 0 {
                tokio::task::yield_now().await;
                continue;
            }
            if let Some(opened) = self.opened() {
                if opened.elapsed() >= inner.config.linger {
                    if !self.dispatch_ready(false).await {
                        self.wait_for_slot().await;
                    }
                    continue;
                }
            }
            self.sleep().await;
        }
    }

    fn finish_loss_log(&mut self) {
        if let Some(l) = self.loss.as_mut() {
            l.check(&self.inner, true);
        }
    }

    /// Under `RetryQueue::DropOldest`, while producers wait for memory, the
    /// oldest request waiting for a retry gives its memory up.
    fn relieve_memory(&self) {
        if self.inner.config.flow.retry_queue == RetryQueue::DropOldest
            && self.inner.budget_waiters.load(Ordering::Relaxed) > 0
        {
            self.shared.evict_oldest(None);
        }
    }

    fn batch_full(&self) -> bool {
        (0..self.batches.len()).any(|lane| self.is_full(lane))
    }

    /// Whether `lane`'s batch reached the batch target or the byte limit
    /// (or was closed short of it).
    fn is_full(&self, lane: usize) -> bool {
        let cfg = &self.inner.config;
        let target = self.inner.workers[self.idx]
            .counters
            .batch_target
            .load(Ordering::Relaxed) as usize;
        self.batches[lane].is_full(target.min(cfg.batch_cap()), self.inner.batch_limit)
    }

    /// When the oldest open batch opened.
    fn opened(&self) -> Option<Instant> {
        self.batches.iter().filter_map(Batch::opened).min()
    }

    fn batches_empty(&self) -> bool {
        self.batches.iter().all(Batch::is_empty)
    }

    /// Moves a pending flush forward. Returns true if it did something that
    /// warrants another turn of the loop without sleeping.
    async fn advance_flush(&mut self) -> bool {
        let requested = self.inner.flush_requested.load(Ordering::SeqCst);
        if self.flush.is_none() && requested > self.flush_done {
            let tails = self.consumers.iter().map(|(_, c)| c.tail()).collect();
            self.flush = Some(PendingFlush {
                epoch: requested,
                tails,
                boundary: None,
            });
        }
        let Some(flush) = self.flush.as_mut() else {
            return false;
        };
        if flush.boundary.is_none() {
            let drained = self
                .consumers
                .iter()
                .zip(&flush.tails)
                .all(|((_, c), tail)| c.head() >= *tail);
            if !drained {
                return false;
            }
            self.dispatch().await;
            if let Some(f) = self.flush.as_mut() {
                f.boundary = Some(self.next_seq);
            }
            return true;
        }
        let boundary = flush.boundary.unwrap_or(0);
        let earliest = self.shared.outstanding.borrow().keys().next().copied();
        if earliest.is_none_or(|s| s >= boundary) {
            self.flush_done = flush.epoch;
            self.flush = None;
            let inner = &self.inner;
            inner.workers[self.idx]
                .flush_done
                .store(self.flush_done, Ordering::Release);
            let _g = inner.flush_lock.lock();
            inner.flush_cv.notify_all();
            return true;
        }
        false
    }

    /// Sleeps until a producer, a finished request or a control call wakes
    /// the worker, or the batch's linger ends.
    async fn sleep(&mut self) {
        let inner = self.inner.clone();
        let shared = &inner.workers[self.idx];
        let mut until = match self.opened() {
            Some(opened) => opened + inner.config.linger,
            None => Instant::now() + IDLE_POLL,
        };
        if let Some(d) = inner.stop_deadline() {
            until = until.min(d);
        }
        let mode = if self.batches_empty() { IDLE } else { LINGER };
        // SeqCst pairs with the producers' SeqCst load in `maybe_wake`; the
        // ring tails below are read with SeqCst too.
        shared.mode.store(mode, Ordering::SeqCst);
        let busy = self.consumers.iter().any(|(_, c)| c.tail() != c.head())
            || (self.flush.is_none()
                && inner.flush_requested.load(Ordering::SeqCst) > self.flush_done)
            || inner.stop.load(Ordering::SeqCst);
        if busy {
            shared.mode.store(AWAKE, Ordering::SeqCst);
            tokio::task::yield_now().await;
            return;
        }
        tokio::select! {
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
        shared.mode.store(AWAKE, Ordering::SeqCst);
    }

    /// Shutdown's deadline passed: everything this worker still holds is
    /// counted as failed, so that nothing accepted is left unaccounted.
    fn abandon(&mut self) {
        let w = &self.inner.workers[self.idx];
        // Held: in a batch, or in a request still outstanding.
        let resource = self.inner.resource_field.read().clone();
        let mut lost: u64 = self
            .batches
            .iter_mut()
            .map(|b| b.take(&resource).items)
            .sum();
        lost += self.shared.outstanding.borrow().values().sum::<u64>();
        let lost_fate = Fate::Failed(FailReason::Shutdown, None);
        for s in self.shares.iter_mut() {
            s.settle(lost_fate);
        }
        // Still in the rings: taken out now, and failed with the rest.
        let mut unread = 0;
        let receipts = &self.inner.receipts;
        for (_, c) in self.consumers.iter_mut() {
            let mut shares = Shares::default();
            unread += c.read(usize::MAX, |tag, payload| {
                if let Some((id, _)) = drain::receipt_of(tag, payload) {
                    shares.add(receipts, id);
                }
                true
            }) as u64;
            shares.settle(lost_fate);
        }
        w.counters.drain(unread);
        w.counters.fail(FailReason::Shutdown, lost + unread);
        w.flush_done.store(u64::MAX, Ordering::Release);
        let _g = self.inner.flush_lock.lock();
        self.inner.flush_cv.notify_all();
    }
}
