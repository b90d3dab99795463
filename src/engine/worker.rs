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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::batch::Batch;
use super::{Inner, AWAKE, IDLE, LINGER};
use crate::config::{Compression, RetryQueue, Signal};
use crate::export::compress::Compressor;
use crate::export::Backoff;
use crate::export::{ExportError, Exporter};
use crate::flow::breaker::{Admit, Breaker};
use crate::flow::concurrency::{Aimd, Outcome};
use crate::ring::Consumer;

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

/// What export tasks share with their worker.
struct TaskShared {
    inner: Arc<Inner>,
    idx: usize,
    /// One exporter per signal (traces, logs, metrics), each with its own
    /// endpoint, path, headers and compression.
    exporters: Vec<Exporter>,
    /// Per signal: the request timeout.
    timeouts: [Duration; 3],
    /// Outstanding requests: sequence number -> records.
    outstanding: RefCell<BTreeMap<u64, u64>>,
    /// The limit on requests in flight (`in_flight_requests` in the
    /// worker's counters): fixed, or moved by the AIMD controller.
    fixed_limit: usize,
    aimd: RefCell<Option<Aimd>>,
    /// Signalled when a request ends or the limit grows.
    slot_freed: Notify,
    /// One circuit breaker per signal: each signal may have its own
    /// endpoint, and a dead logs endpoint must not hold spans back.
    breakers: [RefCell<Breaker>; 3],
    /// Signalled when a breaker's probe has its answer.
    breaker_changed: Notify,
    /// Requests sleeping before a retry, oldest first, each with the signal
    /// that evicts it (`RetryQueue::DropOldest`).
    retrying: RefCell<BTreeMap<u64, Rc<Notify>>>,
}

impl TaskShared {
    fn counters(&self) -> &crate::stats::WorkerCounters {
        &self.inner.workers[self.idx].counters
    }

    fn now_ns(&self) -> u64 {
        self.inner.epoch.elapsed().as_nanos() as u64
    }

    /// Requests in flight (sending or waiting for a retry). Written only on
    /// this worker's thread; the atomic is what stats() reads.
    fn in_flight(&self) -> usize {
        self.counters().in_flight_requests.load(Ordering::Relaxed) as usize
    }

    fn limit(&self) -> usize {
        match &*self.aimd.borrow() {
            Some(a) => a.limit(),
            None => self.fixed_limit,
        }
    }

    /// Drops the request that has waited longest for its retry. Returns
    /// whether there was one.
    fn evict_oldest(&self) -> bool {
        match self.retrying.borrow_mut().pop_first() {
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
    fn enter_retry_queue(&self, seq: u64) -> Rc<Notify> {
        let signal = Rc::new(Notify::new());
        self.retrying.borrow_mut().insert(seq, signal.clone());
        if self.inner.config.flow.retry_queue == RetryQueue::DropOldest {
            // A dispatch waiting for a slot may now evict this request.
            self.slot_freed.notify_one();
        }
        signal
    }

    /// Waits until the circuit breaker lets request `seq` out, or
    /// `give_up`. While it waits, the request is in the retry queue: under
    /// `RetryQueue::DropOldest` newer data may evict it.
    async fn admit(&self, signal: usize, seq: u64, give_up: Instant) -> Admission {
        loop {
            let admit = self.breakers[signal].borrow_mut().admit(self.now_ns());
            let until = match admit {
                Admit::Go => return Admission::Send { probe: false },
                Admit::Probe => {
                    self.publish_breaker();
                    return Admission::Send { probe: true };
                }
                Admit::WaitUntil(ns) => Some(self.inner.epoch + Duration::from_nanos(ns)),
                Admit::WaitProbe => None,
            };
            let evict = self.enter_retry_queue(seq);
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
    fn on_attempt(
        &self,
        signal: usize,
        probe: bool,
        rtt: Duration,
        outcome: Outcome,
        no_answer: bool,
    ) {
        let now = self.now_ns();
        let authority = &self.inner.config.signals[signal].endpoint.authority;
        {
            let mut b = self.breakers[signal].borrow_mut();
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

    /// Publishes which signals' breakers are not closed (bit per signal).
    fn publish_breaker(&self) {
        let open = self
            .breakers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.borrow().state() != crate::flow::breaker::State::Closed)
            .fold(0u64, |m, (i, _)| m | 1 << i);
        self.counters().breaker_state.store(open, Ordering::Relaxed);
    }
}

/// What the circuit breaker let a request do.
enum Admission {
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
    inner: &'a Inner,
    n: u64,
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.inner.release_memory(self.n);
        }
    }
}

/// Measures the worker thread's CPU time against its budget (a fraction of
/// one core), every `EVERY`.
struct CpuMeter {
    budget: f64,
    wall: Instant,
    cpu: Duration,
}

impl CpuMeter {
    const EVERY: Duration = Duration::from_millis(100);

    fn new(budget: f64) -> CpuMeter {
        CpuMeter {
            budget,
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }

    /// Whether the thread used more than its budget since the last check
    /// (`None` between checks).
    fn over(&mut self) -> Option<bool> {
        let wall = self.wall.elapsed();
        if wall < Self::EVERY {
            return None;
        }
        let cpu = thread_cpu_time();
        let used = (cpu.saturating_sub(self.cpu)).as_secs_f64() / wall.as_secs_f64();
        self.wall = Instant::now();
        self.cpu = cpu;
        Some(used > self.budget)
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux. On failure `ts` stays zero and we report zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Logs when records start being lost and when they stop, at most once
/// each way, never per record (the OpenTelemetry error-handling guidance:
/// say so, but do not flood).
struct LossLog {
    checked: Instant,
    lost: u64,
    /// While losing: when it began, the count then, and the last rise.
    losing: Option<(Instant, u64, Instant)>,
}

impl LossLog {
    const EVERY: Duration = Duration::from_millis(250);
    /// No new loss for this long ends a loss episode.
    const QUIET: Duration = Duration::from_secs(2);

    fn new() -> LossLog {
        LossLog {
            checked: Instant::now(),
            lost: 0,
            losing: None,
        }
    }

    fn check(&mut self, inner: &Inner, finishing: bool) {
        let now = Instant::now();
        if !finishing && now - self.checked < Self::EVERY {
            return;
        }
        self.checked = now;
        let s = inner.stats();
        let lost = s.dropped.total() + s.failed + s.rejected;
        if lost > self.lost {
            if self.losing.is_none() {
                let d = &s.dropped;
                log::warn!(
                    "otlpflow: losing records: {} so far (dropped: full {}, memory {}, rate_limited {}, too_large {}, invalid {}, shutdown {}; failed: permanent {}, exhausted {}, evicted {}, shutdown {}; rejected by the receiver {})",
                    lost, d.full, d.memory, d.rate_limited, d.too_large, d.invalid, d.shutdown,
                    s.failed_permanent, s.failed_exhausted, s.failed_evicted, s.failed_shutdown, s.rejected
                );
                self.losing = Some((now, self.lost, now));
            } else if let Some(l) = self.losing.as_mut() {
                l.2 = now;
            }
            self.lost = lost;
        }
        if let Some((began, base, last)) = self.losing {
            if finishing || now - last >= Self::QUIET {
                log::warn!(
                    "otlpflow: records no longer being lost: {} lost over {:.1} s",
                    lost - base,
                    (last - began).as_secs_f64()
                );
                self.losing = None;
            }
        }
    }
}

struct Worker {
    inner: Arc<Inner>,
    idx: usize,
    consumers: Vec<(usize, Consumer)>,
    /// One batch per signal (traces, logs, metrics).
    batches: [Batch; 3],
    scope_cache: Vec<Option<Bytes>>,
    compressors: Vec<Compressor>,
    shared: Rc<TaskShared>,
    /// Bytes of the records in each batch, held against the memory budget.
    charged: [u64; 3],
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
    inner: Arc<Inner>,
    idx: usize,
    consumers: Vec<(usize, Consumer)>,
    runtime: tokio::runtime::Runtime,
) {
    let cfg = &inner.config;
    let per_signal: Vec<crate::config::Config> =
        Signal::ALL.iter().map(|s| cfg.for_signal(*s)).collect();
    let exporters = per_signal.iter().map(Exporter::new).collect();
    let timeouts = [0, 1, 2].map(|i| per_signal[i].request_timeout);
    let compressors = per_signal
        .iter()
        .map(|c| Compressor::new(c.compression, c.compression_level))
        .collect();
    let now_ns = inner.epoch.elapsed().as_nanos() as u64;
    let aimd = cfg
        .flow
        .adaptive_concurrency
        .map(|(min, max)| Aimd::new(min, max, now_ns));
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
    let worker = Worker {
        compressors,
        shared: Rc::new(TaskShared {
            inner: inner.clone(),
            idx,
            exporters,
            timeouts,
            outstanding: RefCell::new(BTreeMap::new()),
            fixed_limit: cfg.max_in_flight,
            aimd: RefCell::new(aimd),
            slot_freed: Notify::new(),
            breakers: [0, 1, 2].map(|_| RefCell::new(breaker.clone())),
            breaker_changed: Notify::new(),
            retrying: RefCell::new(BTreeMap::new()),
        }),
        charged: [0; 3],
        samples: Vec::new(),
        loss: (idx == 0).then(LossLog::new),
        cpu: cfg.flow.worker_cpu_budget.map(CpuMeter::new),
        inner,
        idx,
        consumers,
        batches: [Batch::new(), Batch::new(), Batch::for_metrics()],
        scope_cache: Vec::new(),
        next_seq: 0,
        flush: None,
        flush_done: 0,
        rng: 0x9E37_79B9_7F4A_7C15 ^ (idx as u64 + 1),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, worker.run());
    // Dropping the LocalSet and runtime drops any task abandoned at the
    // shutdown deadline; `abandon` has already counted its records.
}

impl Worker {
    async fn run(mut self) {
        loop {
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
                self.dispatch().await;
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
                    self.dispatch().await;
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
            self.shared.evict_oldest();
        }
    }

    fn batch_full(&self) -> bool {
        let cfg = &self.inner.config;
        let target = self.inner.workers[self.idx]
            .counters
            .batch_target
            .load(Ordering::Relaxed) as usize;
        self.batches.iter().any(|b| {
            b.items() >= target.min(cfg.max_batch_items) || b.bytes() >= self.inner.batch_limit
        })
    }

    /// When the oldest open batch opened.
    fn opened(&self) -> Option<Instant> {
        self.batches.iter().filter_map(Batch::opened).min()
    }

    fn batches_empty(&self) -> bool {
        self.batches.iter().all(Batch::is_empty)
    }

    /// Moves committed records from this worker's rings into the batch, up to
    /// the batch limits. Returns the number of records moved.
    fn drain(&mut self) -> usize {
        let Worker {
            inner,
            consumers,
            batches,
            scope_cache,
            idx,
            charged,
            samples,
            ..
        } = self;
        let cfg = &inner.config;
        let max_items = (inner.workers[*idx]
            .counters
            .batch_target
            .load(Ordering::Relaxed) as usize)
            .min(cfg.max_batch_items);
        let mut total = 0;
        for (shard_idx, consumer) in consumers.iter_mut() {
            let limit = inner.batch_limit;
            let full = |b: &Batch| b.items() >= max_items || b.bytes() >= limit;
            if batches.iter().any(full) {
                break;
            }
            let room = limit - batches.iter().map(Batch::bytes).max().unwrap_or(0);
            // Take the shard's latency sample before reading: its record was
            // committed before the sample was set, so it is in the ring now.
            // Load first: a swap on every drain would pull the producers'
            // line away from them even when there is no sample.
            let slot = &inner.shards[*shard_idx].counters.sample_ns;
            if slot.load(Ordering::Relaxed) != 0 {
                let sample = slot.swap(0, Ordering::Acquire);
                if sample != 0 {
                    samples.push(sample);
                }
            }
            let n = consumer.read(room, |tag, payload| {
                let signal = (tag >> super::SIGNAL_SHIFT) as usize;
                let Some(batch) = batches.get_mut(signal) else {
                    // Never written by this crate; skip it rather than stall.
                    debug_assert!(false, "ring record with signal {signal}");
                    return true;
                };
                // Close the batch before a record would take it past the
                // request limit: the record waits in the ring for the next.
                if batch.items() >= max_items
                    || (!batch.is_empty() && batch.bytes() + payload.len() + 16 > limit)
                {
                    return false;
                }
                batch.push(tag & super::SCOPE_MASK, payload, |t| {
                    scope_bytes(inner, scope_cache, t)
                });
                charged[signal] += payload.len() as u64;
                true
            });
            if n > 0 {
                total += n;
                let shard = &inner.shards[*shard_idx];
                // SeqCst fence pairs with the producer's SeqCst increment of
                // `waiters` in `wait_for_space`: either we see the waiter or
                // it sees the space we just freed.
                fence(Ordering::SeqCst);
                if shard.waiters.load(Ordering::Relaxed) > 0 && shard.ring.used() <= shard.low_water
                {
                    let _g = shard.lock.lock();
                    shard.space.notify_all();
                }
            }
        }
        if total > 0 {
            inner.workers[*idx]
                .counters
                .drained
                .fetch_add(total as u64, Ordering::Relaxed);
        }
        total
    }

    /// Closes every non-empty batch and sends each as its signal's request.
    async fn dispatch(&mut self) {
        for signal in 0..3 {
            if !self.batches[signal].is_empty() {
                self.dispatch_one(signal).await;
            }
        }
    }

    /// Closes one signal's batch, frames and compresses it, waits for an
    /// in-flight slot, and starts the export task.
    async fn dispatch_one(&mut self, signal: usize) {
        let req = self.batches[signal].take(&self.inner.resource_field);
        let items = req.items;
        // Bytes held against the memory budget; the export task takes them
        // over.
        let mut charge = std::mem::take(&mut self.charged[signal]);
        let counters = &self.inner.workers[self.idx].counters;
        let framed = frame(
            &mut self.compressors[signal],
            &self.shared.exporters[signal],
            &req,
        );
        let chunks = match framed {
            Ok(c) => c,
            Err(e) => {
                counters.failed.fetch_add(req.items, Ordering::Relaxed);
                *self.inner.last_error.lock() = Some(format!("compression: {e}"));
                self.inner.release_memory(charge);
                return;
            }
        };
        let wire: usize = chunks.iter().map(|c| c.len()).sum();
        if let (Some(b), true) = (
            &self.inner.budget,
            self.compressors[signal].kind() != Compression::None,
        ) {
            // The compressed copy replaces the batch's buffers (dropped with
            // `req` below): hold its size instead.
            b.force(wire as u64);
            self.inner.release_memory(charge);
            charge = wire as u64;
        }
        counters
            .bytes_raw
            .fetch_add(req.message_len as u64, Ordering::Relaxed);
        drop(req);
        counters
            .bytes_wire
            .fetch_add(wire as u64, Ordering::Relaxed);
        // Wait for a request slot. Under DropOldest, a request waiting for
        // its retry makes room for this fresh one.
        while self.shared.in_flight() >= self.shared.limit() {
            if self.inner.config.flow.retry_queue == RetryQueue::DropOldest {
                self.shared.evict_oldest();
            }
            self.shared.slot_freed.notified().await;
        }
        let n = counters.in_flight_requests.fetch_add(1, Ordering::Relaxed) as usize + 1;
        if let Some(a) = self.shared.aimd.borrow_mut().as_mut() {
            a.on_send(n);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.shared.outstanding.borrow_mut().insert(seq, items);
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let shared = self.shared.clone();
        let seed = self.rng;
        let request = Request {
            samples: std::mem::take(&mut self.samples),
            signal,
            seq,
            chunks,
            items,
            wire: wire as u64,
            charge,
        };
        tokio::task::spawn_local(async move {
            export_task(&shared, request, seed).await;
            shared.outstanding.borrow_mut().remove(&seq);
            let w = &shared.inner.workers[shared.idx];
            w.counters
                .in_flight_requests
                .fetch_sub(1, Ordering::Relaxed);
            shared.slot_freed.notify_one();
            // Let the worker re-check a pending flush.
            w.notify.notify_one();
        });
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
        let mut lost: u64 = self
            .batches
            .iter_mut()
            .map(|b| b.take(&self.inner.resource_field).items)
            .sum();
        lost += self.shared.outstanding.borrow().values().sum::<u64>();
        for (_, c) in self.consumers.iter_mut() {
            lost += c.read(usize::MAX, |_, _| true) as u64;
        }
        let w = &self.inner.workers[self.idx];
        w.counters
            .failed_shutdown
            .fetch_add(lost, Ordering::Relaxed);
        w.flush_done.store(u64::MAX, Ordering::Release);
        let _g = self.inner.flush_lock.lock();
        self.inner.flush_cv.notify_all();
    }
}

/// The encoded `scope` field for a tag, cached per worker.
fn scope_bytes(inner: &Inner, cache: &mut Vec<Option<Bytes>>, tag: u32) -> Bytes {
    let t = tag as usize;
    if let Some(Some(b)) = cache.get(t) {
        return b.clone();
    }
    let b = inner
        .scopes
        .read()
        .get(t)
        .map(|(_, _, b)| b.clone())
        .unwrap_or_default();
    if cache.len() <= t {
        cache.resize(t + 1, None);
    }
    cache[t] = Some(b.clone());
    b
}

/// Frames a request for the exporter's protocol (a gRPC length prefix, or
/// nothing for OTLP/HTTP), compressing it if configured. Uncompressed, the
/// scope chunks are sent as they are, without joining them.
fn frame(
    compressor: &mut Compressor,
    exporter: &Exporter,
    req: &super::batch::Request,
) -> std::io::Result<Vec<Bytes>> {
    let prefix = exporter.prefix_len();
    if compressor.kind() == Compression::None {
        let mut head = vec![0; prefix + req.head.len()];
        exporter.write_prefix(&mut head[..prefix], req.message_len, false);
        head[prefix..].copy_from_slice(&req.head);
        let mut chunks = Vec::with_capacity(1 + req.chunks.len());
        chunks.push(Bytes::from(head));
        chunks.extend(req.chunks.iter().cloned());
        return Ok(chunks);
    }
    let mut out = compressor.compress(&req.slices(), req.message_len, prefix)?;
    let len = out.len() - prefix;
    exporter.write_prefix(&mut out[..prefix], len, true);
    Ok(vec![Bytes::from(out)])
}

/// One export request, as its task owns it.
struct Request {
    /// Commit times of sampled records in it (end-to-end latency).
    samples: Vec<u64>,
    /// Traces 0, logs 1, metrics 2.
    signal: usize,
    seq: u64,
    chunks: Vec<Bytes>,
    items: u64,
    /// Bytes on the wire (for egress pacing).
    wire: u64,
    /// Bytes held against the memory budget.
    charge: u64,
}

/// Sends one request, retrying transient failures with backoff until the
/// retry budget or the shutdown deadline runs out, and counts the outcome.
/// Each attempt first passes the circuit breaker and the egress pacing.
async fn export_task(shared: &TaskShared, req: Request, seed: u64) {
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
    loop {
        let mut give_up = started + cfg.retry.max_elapsed;
        if let Some(d) = inner.stop_deadline() {
            give_up = give_up.min(d);
        }
        let probe = match shared.admit(req.signal, req.seq, give_up).await {
            Admission::Send { probe } => probe,
            Admission::GaveUp => {
                // The endpoint stayed down (breaker open) past the budget.
                counters.failed.fetch_add(items, Ordering::Relaxed);
                counters
                    .failed_exhausted
                    .fetch_add(items, Ordering::Relaxed);
                return;
            }
            Admission::Evicted => {
                counters.failed.fetch_add(items, Ordering::Relaxed);
                counters.failed_evicted.fetch_add(items, Ordering::Relaxed);
                return;
            }
        };
        if let Some(bucket) = &inner.egress {
            let wait = bucket.reserve(req.wire);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters
            .signals_used
            .fetch_or(1 << req.signal, Ordering::Relaxed);
        let t0 = Instant::now();
        let result = match tokio::time::timeout(
            shared.timeouts[req.signal],
            shared.exporters[req.signal].send(&req.chunks),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ExportError::Timeout),
        };
        let rtt = t0.elapsed();
        match result {
            Ok(ack) => {
                shared.on_attempt(req.signal, probe, rtt, Outcome::Answered, false);
                let latency = rtt.as_nanos() as u64;
                counters.export_latency.record(latency);
                let now = inner.epoch.elapsed().as_nanos() as u64;
                for s in &req.samples {
                    counters.e2e_latency.record(now.saturating_sub(*s));
                }
                adapt_batch(cfg, counters, latency);
                counters.consecutive_failures.store(0, Ordering::Relaxed);
                let rejected = ack.rejected.min(items);
                counters
                    .exported
                    .fetch_add(items - rejected, Ordering::Relaxed);
                counters.exported_by_signal[req.signal]
                    .fetch_add(items - rejected, Ordering::Relaxed);
                if rejected > 0 {
                    counters.rejected.fetch_add(rejected, Ordering::Relaxed);
                    *inner.last_error.lock() = Some(format!("partial success: {}", ack.message));
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
                shared.on_attempt(req.signal, probe, rtt, outcome, e.no_answer());
                counters.request_errors.fetch_add(1, Ordering::Relaxed);
                counters
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed);
                *inner.last_error.lock() = Some(if e.refuses_encoding() {
                    format!(
                        "configuration error: the receiver refuses compression {:?} ({e}); use none or gzip",
                        cfg.compression.token().unwrap_or("none")
                    )
                } else {
                    e.to_string()
                });
                // The server's RetryInfo or Retry-After wins over our backoff.
                let backoff_delay = backoff.next_delay();
                let delay = e.retry_after().unwrap_or(backoff_delay);
                if e.retryable() && Instant::now() + delay < give_up {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    if wait_for_retry(shared, req.seq, delay).await {
                        continue;
                    }
                    counters.failed.fetch_add(items, Ordering::Relaxed);
                    counters.failed_evicted.fetch_add(items, Ordering::Relaxed);
                    return;
                }
                counters.failed.fetch_add(items, Ordering::Relaxed);
                if e.retryable() {
                    counters
                        .failed_exhausted
                        .fetch_add(items, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

/// Sleeps before a retry in the retry queue, where newer data may evict
/// the request (`RetryQueue::DropOldest`). Returns false if it was evicted.
async fn wait_for_retry(shared: &TaskShared, seq: u64, delay: Duration) -> bool {
    let signal = shared.enter_retry_queue(seq);
    let evicted = tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = signal.notified() => true,
    };
    shared.retrying.borrow_mut().remove(&seq);
    !evicted
}

/// Moves the batch target after an acknowledged request (see
/// `PipelineBuilder::adaptive_batch`). Runs on the worker's thread.
fn adapt_batch(
    cfg: &crate::config::Config,
    counters: &crate::stats::WorkerCounters,
    latency_ns: u64,
) {
    // The smoothed round trip is kept either way: health() reads it too.
    let old = counters.latency_ewma_ns.load(Ordering::Relaxed);
    let ewma = if old == 0 {
        latency_ns
    } else {
        // Weight 1/8, in integers: smooth enough not to chase one slow reply.
        (old * 7 + latency_ns) / 8
    };
    counters.latency_ewma_ns.store(ewma, Ordering::Relaxed);
    let Some((min, target)) = cfg.adaptive_batch else {
        return;
    };
    if counters.since_adjust.fetch_add(1, Ordering::Relaxed) + 1 < 4 {
        return;
    }
    let target_ns = target.as_nanos() as u64;
    let current = counters.batch_target.load(Ordering::Relaxed);
    let next = if ewma > 2 * target_ns {
        current * 3 / 4
    } else if ewma < target_ns / 2 {
        (current * 5).div_ceil(4)
    } else {
        current
    }
    .clamp(min as u64, cfg.max_batch_items as u64);
    if next != current {
        counters.batch_target.store(next, Ordering::Relaxed);
    }
    counters.since_adjust.store(0, Ordering::Relaxed);
}
