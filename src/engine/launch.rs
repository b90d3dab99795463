//! Launching an engine: its shards and rings, its workers' state, its
//! ingest limits and budget, and the worker threads, each given the
//! consumers of its own shards. Also the stats snapshot over them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use super::{batch, worker, Engine, Shard, WorkerState, AWAKE, SCOPE_BUCKETS};
use crate::config::Config;
use crate::error::Error;
use crate::ring::{Consumer, Ring};
use crate::stats::{self, ShardCounters, Stats, WorkerCounters};

impl Engine {
    /// Builds an engine and starts its workers. `scopes` and `carried` (the
    /// counters of the engine it replaces after a fork) are kept.
    pub(super) fn launch(
        config: Config,
        id: u64,
        scopes: super::scopes::ScopeTable,
        carried: Option<Stats>,
    ) -> Result<(Arc<Engine>, Vec<JoinHandle<()>>), Error> {
        // Each signal's endpoint, TLS client and pool, checked before any
        // thread starts.
        let lanes = super::lanes::Lanes::new(&config)?;
        let spool = match (&config.spool, &carried) {
            (Some((dir, max)), None) => Some(Arc::new(crate::spool::Spool::open(
                dir,
                *max,
                config.spool_sync,
                config.spool_full,
            )?)),
            _ => None,
        };
        let high_water = (config.ring_bytes / 4).min(config.max_batch_bytes);
        let shards: Box<[Shard]> = (0..config.shards)
            .map(|i| Shard {
                ring: Arc::new(Ring::new(config.ring_bytes)),
                counters: ShardCounters::default(),
                worker: i % config.workers,
                high_water,
                low_water: config.ring_bytes / 2,
                waiters: AtomicU32::new(0),
                lock: Mutex::new(()),
                space: Condvar::new(),
            })
            .collect();
        let workers = (0..config.workers)
            .map(|_| {
                let counters = WorkerCounters::default();
                counters
                    .batch_target
                    .store(config.max_batch_items as u64, Ordering::Relaxed);
                WorkerState {
                    mode: AtomicU32::new(AWAKE),
                    notify: tokio::sync::Notify::new(),
                    counters,
                    endpoints: Mutex::new(Vec::new()),
                    flush_done: AtomicU64::new(0),
                }
            })
            .collect();
        let resource_field = batch::resource_field(&config.resource);
        // Room for the resource, the request's own fields and gRPC framing,
        // and the worst-case growth of compressing incompressible data
        // (zstd and deflate both stay under 1/128 plus a small header).
        let overhead = resource_field.len() + 1024 + config.max_request_bytes / 128;
        let batch_limit = config
            .max_batch_bytes
            .min(config.max_request_bytes.saturating_sub(overhead))
            .max(256);
        let max_record =
            (config.ring_bytes / 2 - crate::ring::HEADER).min(batch_limit.saturating_sub(512));
        let inner = Arc::new(Engine {
            id,
            ingest_limited: config.rate_limit.is_some()
                || config.byte_rate_limit.is_some()
                || config.flow.window_limit.is_some()
                || config.flow.scope_rate_limit.is_some(),
            record_bucket: config
                .rate_limit
                .map(|(r, b)| crate::flow::TokenBucket::new(r, b)),
            byte_bucket: config
                .byte_rate_limit
                .map(|(r, b)| crate::flow::TokenBucket::new(r, b)),
            window: config
                .flow
                .window_limit
                .map(|(max, w)| crate::flow::SlidingWindow::new(max, w.as_nanos() as u64, 16)),
            scope_buckets: config.flow.scope_rate_limit.map(|(r, b)| {
                (0..SCOPE_BUCKETS)
                    .map(|_| crate::flow::TokenBucket::new(r, b))
                    .collect()
            }),
            egress: config
                .flow
                .egress_byte_rate
                .map(|(r, b)| crate::flow::TokenBucket::new(r, b)),
            system_memory: config.flow.system_memory_limit.map(|f| {
                Arc::new(crate::flow::SystemMemory::new(
                    f,
                    config.system_memory_source.clone(),
                ))
            }),
            budget: config
                .flow
                .memory_budget
                .map(crate::flow::MemoryBudget::new),
            budget_waiters: AtomicU32::new(0),
            budget_lock: Mutex::new(()),
            budget_cv: Condvar::new(),
            async_waiters: AtomicU32::new(0),
            async_room: tokio::sync::Notify::new(),
            receipts: super::receipt::ReceiptTable::new(),
            spool,
            rate_window: Mutex::new(stats::RateWindow::new(Instant::now())),
            batch_limit,
            max_record,
            resource_field: RwLock::new(Bytes::from(resource_field)),
            resource_adoptable: AtomicBool::new(config.resource_is_default),
            lanes,
            config,
            shards,
            producers: super::producer::Producers::new(),
            workers,
            scope_count: AtomicU32::new(scopes.len() as u32),
            scopes_overflowed: AtomicU64::new(0),
            scopes: RwLock::new(scopes),
            closed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stop_deadline_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            flush_requested: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            flush_cv: Condvar::new(),
            last_error: Mutex::new(None),
            start_unix_nano: crate::clock::now_unix_nano(),
            self_scope: std::sync::OnceLock::new(),
            instruments: RwLock::new(Default::default()),
            collect_lock: Mutex::new(()),
            collector_cv: Condvar::new(),
        });
        if let Some(c) = carried {
            inner.carry(&c);
        }
        let insecure = inner.config.tls.insecure_skip_verify
            && inner
                .lanes
                .current()
                .exports
                .iter()
                .any(|e| e.endpoint.scheme == "https");
        if insecure {
            *inner.last_error.lock() = Some(crate::tls::INSECURE_WARNING.to_owned());
        }
        let mut threads = Vec::new();
        if let Some(dns) = inner.config.dns.clone() {
            let engine = Arc::downgrade(&inner);
            let resolver = std::thread::Builder::new()
                .name("otlpflow-resolve".into())
                .spawn(move || resolve_again(&dns, &engine))
                .map_err(|e| Error::internal(format!("spawning the resolver: {e}")))?;
            threads.push(resolver);
        }
        if let Some(sys) = inner.system_memory.clone() {
            let engine = Arc::downgrade(&inner);
            let sampler = std::thread::Builder::new()
                .name("otlpflow-memory".into())
                .spawn(move || sample_system_memory(&sys, &engine))
                .map_err(|e| Error::internal(format!("spawning the memory sampler: {e}")))?;
            threads.push(sampler);
        }
        for w in 0..inner.config.workers {
            let consumers: Vec<(usize, Consumer)> = inner
                .shards
                .iter()
                .enumerate()
                .filter(|(_, s)| s.worker == w)
                // Each shard belongs to one worker: its ring's one consumer
                // goes to that worker.
                .filter_map(|(i, s)| {
                    let mut consumer = s.ring.take_consumer()?;
                    if inner.config.ring_eviction {
                        consumer.evict_read_lines();
                    }
                    Some((i, consumer))
                })
                .collect();
            let spawned = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::internal(format!("starting worker runtime: {e}")))
                .and_then(|runtime| {
                    let inner2 = inner.clone();
                    std::thread::Builder::new()
                        .name(format!("otlpflow-worker-{w}"))
                        .spawn(move || worker::run(inner2, w, consumers, runtime))
                        .map_err(|e| Error::internal(format!("spawning worker thread: {e}")))
                });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    // Stop the workers already started before reporting.
                    inner.stop.store(true, Ordering::SeqCst);
                    inner.closed.store(true, Ordering::SeqCst);
                    inner.wake_all();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok((inner, threads))
    }

    /// Takes over the counts of a replaced engine, so that a fork child's
    /// stats continue the parent's (see `stats::carry`).
    fn carry(&self, c: &Stats) {
        stats::carry(c, &self.shards[0].counters, &self.workers[0].counters);
    }

    pub(super) fn stats(&self) -> Stats {
        let mut s = self.producers.with_all(|threads| {
            stats::snapshot(
                self.shards
                    .iter()
                    .map(|s| (&s.counters, s.ring.used(), s.ring.capacity())),
                threads,
                self.workers.iter().map(|w| &w.counters),
            )
        });
        if let Some(b) = &self.budget {
            s.memory_used = b.used();
            s.memory_peak = b.peak();
        }
        if let Some(sp) = &self.spool {
            let c = &sp.counters;
            s.spool = stats::SpoolStats {
                bytes: sp.bytes(),
                replayed: c.replayed.load(Ordering::Relaxed),
                corrupt: c.corrupt.load(Ordering::Relaxed),
                dropped_full: c.dropped_full.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
            };
        }
        s.scopes_overflowed = self.scopes_overflowed.load(Ordering::Relaxed);
        s.dropped_measurements = self
            .instruments
            .read()
            .list()
            .iter()
            .map(|i| i.dropped.load(Ordering::Relaxed))
            .sum();
        self.rate_window.lock().fill(Instant::now(), &mut s);
        s
    }
}

/// The `otlpflow-resolve` thread: resolves the fleet's DNS name every
/// interval and hands a changed address set to the lanes, until the engine
/// stops (or is gone). A failed resolution keeps the endpoints as they are
/// and is reported as the last error.
fn resolve_again(dns: &crate::config::DnsEndpoints, engine: &std::sync::Weak<Engine>) {
    let step = std::time::Duration::from_millis(50).min(dns.interval);
    loop {
        let until = Instant::now() + dns.interval;
        while Instant::now() < until {
            std::thread::sleep(step);
            match engine.upgrade() {
                Some(e) if !e.stop.load(Ordering::Relaxed) => {}
                _ => return,
            }
        }
        let Some(e) = engine.upgrade() else { return };
        for signal in &dns.signals {
            let changed = dns.targets(*signal).and_then(|(t, note)| {
                if let Some(note) = note {
                    *e.last_error.lock() = Some(note);
                }
                e.lanes.set(&e.config, *signal, &t)
            });
            match changed {
                Ok(true) => log::info!(
                    "otlpflow: {} endpoints now {:?}",
                    signal.name(),
                    e.lanes.addresses(*signal)
                ),
                Ok(false) => {}
                Err(err) => *e.last_error.lock() = Some(err.to_string()),
            }
        }
    }
}

/// The `otlpflow-memory` thread: samples the system's memory use every
/// 100 ms until the engine stops (or is gone), and wakes producers parked
/// on it when the pressure ends.
fn sample_system_memory(sys: &crate::flow::SystemMemory, engine: &std::sync::Weak<Engine>) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Some(e) = engine.upgrade() else { return };
        if e.stop.load(Ordering::Relaxed) {
            return;
        }
        let was_over = sys.over();
        sys.sample();
        if was_over && !sys.over() {
            e.budget_cv.notify_all();
            e.wake_async();
        }
    }
}
