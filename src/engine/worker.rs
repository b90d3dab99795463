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
use tokio::sync::Semaphore;

use super::batch::Batch;
use super::{Inner, AWAKE, IDLE, LINGER};
use crate::config::Compression;
use crate::export::compress::Compressor;
use crate::export::Backoff;
use crate::export::{ExportError, Exporter};
use crate::ring::Consumer;

/// How long an idle worker sleeps before looking at its rings anyway (a
/// safety net; producers wake it sooner).
const IDLE_POLL: Duration = Duration::from_millis(50);

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
    exporter: Exporter,
    /// Outstanding requests: sequence number -> records.
    outstanding: RefCell<BTreeMap<u64, u64>>,
}

struct Worker {
    inner: Arc<Inner>,
    idx: usize,
    consumers: Vec<(usize, Consumer)>,
    batch: Batch,
    scope_cache: Vec<Option<Bytes>>,
    compressor: Compressor,
    permits: Arc<Semaphore>,
    shared: Rc<TaskShared>,
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
    let exporter = Exporter::new(cfg);
    let worker = Worker {
        compressor: Compressor::new(cfg.compression, cfg.compression_level),
        permits: Arc::new(Semaphore::new(cfg.max_in_flight)),
        shared: Rc::new(TaskShared {
            inner: inner.clone(),
            idx,
            exporter,
            outstanding: RefCell::new(BTreeMap::new()),
        }),
        inner,
        idx,
        consumers,
        batch: Batch::new(),
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
                    return;
                }
            }
            if inner.stop.load(Ordering::SeqCst)
                && self.flush.is_none()
                && self.flush_done >= inner.flush_requested.load(Ordering::SeqCst)
            {
                return;
            }
            if drained > 0 {
                tokio::task::yield_now().await;
                continue;
            }
            if let Some(opened) = self.batch.opened() {
                if opened.elapsed() >= inner.config.linger {
                    self.dispatch().await;
                    continue;
                }
            }
            self.sleep().await;
        }
    }

    fn batch_full(&self) -> bool {
        let cfg = &self.inner.config;
        let target = self.inner.workers[self.idx]
            .counters
            .batch_target
            .load(Ordering::Relaxed) as usize;
        self.batch.items() >= target.min(cfg.max_batch_items)
            || self.batch.bytes() >= self.inner.batch_limit
    }

    /// Moves committed records from this worker's rings into the batch, up to
    /// the batch limits. Returns the number of records moved.
    fn drain(&mut self) -> usize {
        let Worker {
            inner,
            consumers,
            batch,
            scope_cache,
            idx,
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
            let room = limit.saturating_sub(batch.bytes());
            if room == 0 || batch.items() >= max_items {
                break;
            }
            let n = consumer.read(room, |tag, payload| {
                // Close the batch before a record would take it past the
                // request limit: the record waits in the ring for the next.
                if batch.items() >= max_items
                    || (!batch.is_empty() && batch.bytes() + payload.len() + 16 > limit)
                {
                    return false;
                }
                batch.push(tag, payload, |t| scope_bytes(inner, scope_cache, t));
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

    /// Closes the batch, frames and compresses it, waits for an in-flight
    /// slot, and starts the export task.
    async fn dispatch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let req = self.batch.take(&self.inner.resource_field);
        let counters = &self.inner.workers[self.idx].counters;
        let framed = frame(&mut self.compressor, &self.shared.exporter, &req);
        let chunks = match framed {
            Ok(c) => c,
            Err(e) => {
                counters.failed.fetch_add(req.items, Ordering::Relaxed);
                *self.inner.last_error.lock() = Some(format!("compression: {e}"));
                return;
            }
        };
        let wire: usize = chunks.iter().map(|c| c.len()).sum();
        counters
            .bytes_raw
            .fetch_add(req.message_len as u64, Ordering::Relaxed);
        counters
            .bytes_wire
            .fetch_add(wire as u64, Ordering::Relaxed);
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            counters.failed.fetch_add(req.items, Ordering::Relaxed);
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.shared.outstanding.borrow_mut().insert(seq, req.items);
        counters.in_flight_requests.fetch_add(1, Ordering::Relaxed);
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let shared = self.shared.clone();
        let items = req.items;
        let seed = self.rng;
        tokio::task::spawn_local(async move {
            export_task(&shared, chunks, items, seed).await;
            shared.outstanding.borrow_mut().remove(&seq);
            let w = &shared.inner.workers[shared.idx];
            w.counters
                .in_flight_requests
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
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
        let mut until = match self.batch.opened() {
            Some(opened) => opened + inner.config.linger,
            None => Instant::now() + IDLE_POLL,
        };
        if let Some(d) = inner.stop_deadline() {
            until = until.min(d);
        }
        let mode = if self.batch.is_empty() { IDLE } else { LINGER };
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
        let mut lost = self.batch.take(&self.inner.resource_field).items;
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

/// Sends one request, retrying transient failures with backoff until the
/// retry budget or the shutdown deadline runs out, and counts the outcome.
async fn export_task(shared: &TaskShared, chunks: Vec<Bytes>, items: u64, seed: u64) {
    let inner = &shared.inner;
    let cfg = &inner.config;
    let counters = &inner.workers[shared.idx].counters;
    let started = Instant::now();
    let mut backoff = Backoff::new(&cfg.retry, seed);
    loop {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let result =
            match tokio::time::timeout(cfg.request_timeout, shared.exporter.send(&chunks)).await {
                Ok(r) => r,
                Err(_) => Err(ExportError::Timeout),
            };
        match result {
            Ok(ack) => {
                let latency = t0.elapsed().as_nanos() as u64;
                counters.export_latency.record(latency);
                adapt_batch(cfg, counters, latency);
                counters.consecutive_failures.store(0, Ordering::Relaxed);
                let rejected = ack.rejected.min(items);
                counters
                    .exported
                    .fetch_add(items - rejected, Ordering::Relaxed);
                if rejected > 0 {
                    counters.rejected.fetch_add(rejected, Ordering::Relaxed);
                    *inner.last_error.lock() = Some(format!("partial success: {}", ack.message));
                }
                return;
            }
            Err(e) => {
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
                let mut give_up = started + cfg.retry.max_elapsed;
                if let Some(d) = inner.stop_deadline() {
                    give_up = give_up.min(d);
                }
                if e.retryable() && Instant::now() + delay < give_up {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    continue;
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

/// Moves the batch target after an acknowledged request (see
/// `PipelineBuilder::adaptive_batch`). Runs on the worker's thread.
fn adapt_batch(
    cfg: &crate::config::Config,
    counters: &crate::stats::WorkerCounters,
    latency_ns: u64,
) {
    let Some((min, target)) = cfg.adaptive_batch else {
        return;
    };
    let old = counters.latency_ewma_ns.load(Ordering::Relaxed);
    let ewma = if old == 0 {
        latency_ns
    } else {
        // Weight 1/8, in integers: smooth enough not to chase one slow reply.
        (old * 7 + latency_ns) / 8
    };
    counters.latency_ewma_ns.store(ewma, Ordering::Relaxed);
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
