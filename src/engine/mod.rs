//! The engine: host threads record into per-core shard rings; worker threads
//! (one per core by default, each owning a disjoint set of shards) drain
//! them, batch, frame, compress and export.
//!
//! Recording is the hot path: pick the thread's shard, size the record, claim
//! ring space, encode the OTLP `Span` in place, commit. No allocation, no
//! lock, no system call. A full ring applies the policy; every refusal is
//! counted by reason. Producers wake an idle worker only when it sleeps with
//! nothing to do, or when a ring crosses its high-water mark.

pub(crate) mod batch;
pub mod fork;
mod worker;

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::config::{Config, PipelineBuilder, Policy, Signal};
use crate::error::{Error, RecordError};
use crate::metrics::{Counter, Gauge, Histogram, Instrument, Kind, UpDownCounter};
use crate::record::{LogRecord, MetricPoint, OwnedValue, Span};
use crate::ring::{ClaimError, Consumer, Ring};
use crate::stats::{self, ShardCounters, Stats, WorkerCounters};

/// A ring record's tag is the scope id, with the signal in bits 28-29
/// (the ring keeps tags to 31 bits).
pub(crate) const SIGNAL_SHIFT: u32 = 28;
/// The scope id bits of a tag.
pub(crate) const SCOPE_MASK: u32 = (1 << SIGNAL_SHIFT) - 1;

/// Scopes with a bucket of their own under `scope_rate_limit`.
const SCOPE_BUCKETS: usize = 256;

/// Worker sleep modes, read by producers after each commit.
const AWAKE: u32 = 0;
/// Sleeping with an empty batch: the next record wakes it.
const IDLE: u32 = 1;
/// Sleeping until its batch's linger ends: only a ring crossing the
/// high-water mark wakes it early.
const LINGER: u32 = 2;

/// One shard: a ring and what its producers count and wait on.
struct Shard {
    ring: Arc<Ring>,
    counters: ShardCounters,
    worker: usize,
    /// High-water mark in ring bytes: crossing it wakes a lingering worker.
    high_water: usize,
    /// Low-water mark in ring bytes: blocked producers resume below it.
    low_water: usize,
    /// Producers parked waiting for space (`Policy::Block`).
    waiters: AtomicU32,
    lock: Mutex<()>,
    space: Condvar,
}

/// What a worker shares with producers and control calls.
struct WorkerShared {
    /// `AWAKE`, `IDLE` or `LINGER`; set by the worker before it sleeps,
    /// swapped back to `AWAKE` by whoever wakes it.
    mode: AtomicU32,
    notify: tokio::sync::Notify,
    counters: WorkerCounters,
    /// The last flush epoch this worker has completed.
    flush_done: AtomicU64,
}

/// An instrumentation scope registered with a pipeline: a cheap, `Copy`
/// handle naming the library that records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    id: u32,
    pipeline: u64,
}

impl Scope {
    /// The handle as two numbers (scope id, pipeline id), for bindings that
    /// keep it in a plain struct. Handing back other numbers is safe: a
    /// handle that does not match the pipeline is refused with
    /// [`RecordError::InvalidScope`].
    pub fn to_parts(self) -> (u32, u64) {
        (self.id, self.pipeline)
    }

    /// The inverse of [`Scope::to_parts`].
    pub fn from_parts(id: u32, pipeline: u64) -> Scope {
        Scope { id, pipeline }
    }
}

/// The counts of a `record_batch` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Records taken into the pipeline.
    pub accepted: u64,
    /// Records refused (each counted in the stats by reason).
    pub dropped: u64,
}

/// Bytes held against the memory budget by a record on its way into a
/// ring: released if the record is refused, kept once it is committed.
struct Reservation<'a> {
    budget: Option<&'a crate::flow::MemoryBudget>,
    n: u64,
}

impl Reservation<'_> {
    #[inline]
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // A refused record: nobody waits for these few bytes more than for
        // the next release, so no wake-up here.
        if let Some(b) = self.budget {
            b.release(self.n);
        }
    }
}

struct Inner {
    id: u64,
    config: Config,
    shards: Box<[Shard]>,
    workers: Box<[WorkerShared]>,
    /// When the engine started (cumulative sums start here).
    start_unix_nano: u64,
    /// The scope of otlpflow's own metrics, registered at first use.
    self_scope: std::sync::OnceLock<Scope>,
    /// Instruments, collected every `metrics_interval`.
    instruments: RwLock<Vec<Arc<Instrument>>>,
    /// One collection at a time.
    collect_lock: Mutex<()>,
    /// Wakes the collector thread early (shutdown).
    collector_cv: Condvar,
    /// Encoded `scope` fields by scope id, append-only.
    scopes: RwLock<Vec<(String, String, Bytes)>>,
    /// `scopes.len()`, readable without the lock. Release/Acquire: a scope
    /// id is accepted only after its entry is in `scopes`.
    scope_count: AtomicU32,
    resource_field: Vec<u8>,
    /// A batch's encoded records stay under this, so that the request,
    /// framed and compressed, stays under `max_request_bytes`.
    batch_limit: usize,
    /// Records larger than this are refused at once (`TooLarge`).
    max_record: usize,
    /// Ingest limits: records per second and bytes per second.
    record_bucket: Option<crate::flow::TokenBucket>,
    byte_bucket: Option<crate::flow::TokenBucket>,
    /// Ingest: records per sliding window.
    window: Option<crate::flow::SlidingWindow>,
    /// Ingest: one bucket per scope id (the last shared by the rest).
    scope_buckets: Option<Box<[crate::flow::TokenBucket]>>,
    /// Egress pacing: wire bytes per second, shared by all workers.
    egress: Option<crate::flow::TokenBucket>,
    /// The memory budget, when configured, and the producers parked on it.
    budget: Option<crate::flow::MemoryBudget>,
    budget_waiters: AtomicU32,
    budget_lock: Mutex<()>,
    budget_cv: Condvar,
    /// Set once by shutdown; producers check it after claiming.
    closed: AtomicBool,
    /// Set when workers should exit after their final flush.
    stop: AtomicBool,
    /// Workers give up sending at this instant (nanoseconds since `epoch`);
    /// zero while no shutdown is running.
    stop_deadline_ns: AtomicU64,
    epoch: Instant,
    /// The latest flush requested.
    flush_requested: AtomicU64,
    flush_lock: Mutex<()>,
    flush_cv: Condvar,
    last_error: Mutex<Option<String>>,
}

/// A running pipeline. Cheap to clone (an `Arc`); share it between threads
/// freely: every method takes `&self`. Dropping the last clone shuts the
/// pipeline down (flushing for up to 5 seconds) if `shutdown` was not called.
#[derive(Clone)]
pub struct Pipeline {
    shared: Arc<Shared>,
}

/// What every clone of a pipeline points at. `current` is replaced only in a
/// forked child, where the parent's workers do not exist (see `fork`).
pub(crate) struct Shared {
    /// The engine, from `Arc::into_raw`. Never freed while `Shared` lives:
    /// an engine replaced after a fork is leaked, so references handed out
    /// before the swap stay valid.
    current: std::sync::atomic::AtomicPtr<Inner>,
    /// The fork generation `current` was started in.
    generation: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Serialises restarts after a fork.
    restart: Mutex<()>,
    /// Whether the metrics collector thread runs.
    collector: AtomicBool,
    /// The Prometheus endpoint, when configured.
    prometheus: Mutex<Option<crate::prometheus::Server>>,
}

static NEXT_PIPELINE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shard hint: the CPU it first recorded on. A thread keeps
    /// its shard so that its records stay in order and its cache lines warm.
    static SHARD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn thread_shard(n: usize) -> usize {
    SHARD_HINT.with(|h| {
        let mut v = h.get();
        if v == usize::MAX {
            // SAFETY: sched_getcpu has no preconditions; it returns -1 on
            // error, which we map to shard 0.
            let cpu = unsafe { libc::sched_getcpu() };
            v = cpu.max(0) as usize;
            h.set(v);
        }
        v % n
    })
}

impl Pipeline {
    /// Starts configuring a pipeline.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    pub(crate) fn start(config: Config) -> Result<Pipeline, Error> {
        let id = NEXT_PIPELINE.fetch_add(1, Ordering::Relaxed);
        let prometheus = config.prometheus;
        let (inner, threads) = Inner::launch(config, id, Vec::new(), None)?;
        let shared = Arc::new(Shared {
            current: std::sync::atomic::AtomicPtr::new(Arc::into_raw(inner).cast_mut()),
            generation: AtomicU64::new(fork::generation()),
            threads: Mutex::new(threads),
            restart: Mutex::new(()),
            collector: AtomicBool::new(false),
            prometheus: Mutex::new(None),
        });
        fork::register(&shared);
        let pipeline = Pipeline { shared };
        if pipeline.shared.inner().config.self_metrics {
            pipeline.shared.start_collector(pipeline.shared.inner());
        }
        if let Some(addr) = prometheus {
            // The server holds a weak handle: it never keeps the pipeline
            // alive, and answers 503 once the pipeline is gone.
            let weak = Arc::downgrade(&pipeline.shared);
            let server = crate::prometheus::Server::start(addr, move || {
                let p = Pipeline {
                    shared: weak.upgrade()?,
                };
                Some((p.stats(), p.health(), p.ring_fill()))
            })
            .map_err(|e| Error::config(format!("prometheus: cannot listen on {addr}: {e}")))?;
            *pipeline.shared.prometheus.lock() = Some(server);
        }
        Ok(pipeline)
    }

    /// The engine, restarted first if this process is a fork child that has
    /// not used the pipeline since the fork. One relaxed load on the hot path.
    #[inline]
    fn inner(&self) -> &Inner {
        if fork::generation() != self.shared.generation.load(Ordering::Relaxed) {
            self.shared.restart_after_fork();
        }
        self.shared.inner()
    }

    /// Registers (or finds) an instrumentation scope.
    pub fn scope(&self, name: &str, version: &str) -> Scope {
        self.scope_with_attributes(name, version, &[])
    }

    /// Registers (or finds) an instrumentation scope with attributes.
    pub fn scope_with_attributes(
        &self,
        name: &str,
        version: &str,
        attributes: &[(String, OwnedValue)],
    ) -> Scope {
        self.inner().scope(name, version, attributes)
    }

    /// Records one finished span. Never allocates or takes a lock on the
    /// common path; under `Policy::Block` a full ring parks the caller up to
    /// the configured wait.
    #[inline]
    pub fn record_span(&self, scope: &Scope, span: &Span<'_>) -> Result<(), RecordError> {
        self.inner()
            .record_with(scope, Signal::Traces, span.encoded_len(), |buf| {
                span.encode(buf)
            })
    }

    /// Records one log record, as `record_span` does a span.
    #[inline]
    pub fn record_log(&self, scope: &Scope, log: &LogRecord<'_>) -> Result<(), RecordError> {
        let inner = self.inner();
        if !log.severity_number.is_valid() {
            return Err(inner.refuse(RecordError::Invalid));
        }
        inner.record_with(scope, Signal::Logs, log.encoded_len(), |buf| {
            log.encode(buf)
        })
    }

    /// Records one metric data point the host aggregated itself. Points of
    /// the same metric (name, unit, description, type) that meet in a batch
    /// are exported as one `Metric`. A malformed point (no name, histogram
    /// buckets that do not match its bounds or count) is refused as
    /// `Invalid` and counted.
    #[inline]
    pub fn record_metric(&self, scope: &Scope, point: &MetricPoint<'_>) -> Result<(), RecordError> {
        let inner = self.inner();
        if crate::record::metric::invalid(point).is_some() {
            return Err(inner.refuse(RecordError::Invalid));
        }
        inner.record_with(scope, Signal::Metrics, point.encoded_len(), |buf| {
            point.encode(buf)
        })
    }

    /// A monotonic counter (exported as a cumulative or delta sum, see
    /// `PipelineBuilder::metrics_temporality`).
    pub fn counter(&self, scope: &Scope, name: &str, unit: &str, description: &str) -> Counter {
        Counter(self.instrument(Kind::Counter, scope, name, unit, description, Vec::new()))
    }

    /// A counter that can go down (a non-monotonic sum).
    pub fn up_down_counter(
        &self,
        scope: &Scope,
        name: &str,
        unit: &str,
        description: &str,
    ) -> UpDownCounter {
        UpDownCounter(self.instrument(
            Kind::UpDownCounter,
            scope,
            name,
            unit,
            description,
            Vec::new(),
        ))
    }

    /// A gauge: the last value set, per attribute set.
    pub fn gauge(&self, scope: &Scope, name: &str, unit: &str, description: &str) -> Gauge {
        Gauge(self.instrument(Kind::Gauge, scope, name, unit, description, Vec::new()))
    }

    /// An explicit-bucket histogram with these bucket bounds (finite,
    /// strictly increasing; empty for the OpenTelemetry defaults).
    pub fn histogram(
        &self,
        scope: &Scope,
        name: &str,
        unit: &str,
        description: &str,
        bounds: &[f64],
    ) -> Result<Histogram, Error> {
        if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::config(format!(
                "histogram {name}: bounds must be finite and strictly increasing"
            )));
        }
        let bounds = if bounds.is_empty() {
            crate::metrics::DEFAULT_BOUNDS.to_vec()
        } else {
            bounds.to_vec()
        };
        Ok(Histogram(self.instrument(
            Kind::Histogram,
            scope,
            name,
            unit,
            description,
            bounds,
        )))
    }

    fn instrument(
        &self,
        kind: Kind,
        scope: &Scope,
        name: &str,
        unit: &str,
        description: &str,
        bounds: Vec<f64>,
    ) -> Arc<Instrument> {
        let inner = self.inner();
        let i = Arc::new(Instrument::new(
            kind,
            *scope,
            name,
            unit,
            description,
            bounds,
            inner.config.cardinality_limit,
        ));
        inner.instruments.write().push(i.clone());
        self.shared.start_collector(inner);
        i
    }

    /// Collects every instrument now and records its data points (the
    /// collector thread does this every `metrics_interval`; `flush` and
    /// `shutdown` do it first). Returns the points recorded.
    pub fn collect_metrics(&self) -> u64 {
        self.inner().collect_metrics()
    }

    /// Records many spans; returns how many were accepted and dropped. One
    /// refusal does not stop the others.
    pub fn record_batch(&self, scope: &Scope, spans: &[Span<'_>]) -> BatchResult {
        let mut r = BatchResult::default();
        for s in spans {
            match self.record_span(scope, s) {
                Ok(()) => r.accepted += 1,
                Err(_) => r.dropped += 1,
            }
        }
        r
    }

    /// A snapshot of the counters, taken without stopping anything.
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// The export path's health: `Down` when every worker that has sent
    /// anything has its circuit breaker open or its last few attempts failed,
    /// `Degraded` when some are failing or a worker's smoothed round trip is
    /// over half the request timeout, `Healthy` otherwise. Recovers by itself
    /// (the breaker probes the endpoint and closes on its first answer).
    pub fn health(&self) -> crate::stats::Health {
        let inner = self.inner();
        stats::health(
            inner.workers.iter().map(|w| &w.counters),
            inner.config.request_timeout.as_nanos() as u64 / 2,
        )
    }

    /// The last export error seen, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner().last_error.lock().clone()
    }

    /// Waits until every record accepted before this call has been exported
    /// or has failed for good, or until `timeout`. Returns the stats then.
    pub fn flush(&self, timeout: Duration) -> Result<Stats, Error> {
        let deadline = Instant::now() + timeout;
        let inner = self.inner();
        if inner.stop.load(Ordering::Acquire) {
            return Err(Error::shutdown());
        }
        inner.collect_metrics();
        inner.flush_until(deadline)?;
        Ok(inner.stats())
    }

    /// Refuses new records, flushes what was accepted (up to `timeout`), stops
    /// and joins the workers. Records still unsent at the deadline are counted
    /// as failed (`failed_shutdown`), so that afterwards `in_flight` is zero.
    /// A second call returns `Error::is_shutdown`.
    pub fn shutdown(&self, timeout: Duration) -> Result<Stats, Error> {
        self.inner().shutdown(&self.shared.threads, timeout)
    }

    /// The address of the Prometheus endpoint, if one was configured.
    pub fn prometheus_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.prometheus.lock().as_ref().map(|s| s.addr())
    }

    /// Each shard ring's fill, 0.0 (empty) to 1.0 (full), in shard order.
    pub fn ring_fill(&self) -> Vec<f64> {
        self.inner()
            .shards
            .iter()
            .map(|s| s.ring.used() as f64 / s.ring.capacity().max(1) as f64)
            .collect()
    }

    /// Whether `shutdown` has begun.
    pub fn is_shut_down(&self) -> bool {
        self.inner().closed.load(Ordering::Acquire)
    }
}

impl Shared {
    /// Starts the thread that collects instruments every
    /// `metrics_interval`, once. It holds the engine (not the pipeline), and
    /// exits when shutdown begins; shutdown joins it.
    fn start_collector(&self, inner: &Inner) {
        // SAFETY: `current` holds a pointer from `Arc::into_raw` that stays
        // valid while `self` lives; we add a count for the thread's own Arc.
        let engine = unsafe {
            let p = self.current.load(Ordering::Acquire);
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        debug_assert!(std::ptr::eq(&*engine, inner));
        self.start_collector_for(engine);
    }

    fn start_collector_for(&self, engine: Arc<Inner>) {
        if self.collector.swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("otlpflow-metrics".into())
            .spawn(move || {
                let every = engine.config.metrics_interval;
                loop {
                    {
                        let mut g = engine.collect_lock.lock();
                        if !engine.closed.load(Ordering::Acquire) {
                            engine.collector_cv.wait_for(&mut g, every);
                        }
                    }
                    if engine.closed.load(Ordering::Acquire) {
                        return;
                    }
                    engine.collect_metrics();
                }
            });
        match spawned {
            Ok(h) => self.threads.lock().push(h),
            Err(e) => {
                *self.inner().last_error.lock() = Some(format!("metrics collector: {e}"));
                self.collector.store(false, Ordering::Release);
            }
        }
    }

    #[inline]
    fn inner(&self) -> &Inner {
        // SAFETY: `current` always holds a pointer from `Arc::into_raw` whose
        // strong count we own; it is freed only in `Drop for Shared`, and a
        // replaced engine is leaked, never freed (see `restart_after_fork`).
        // Acquire pairs with the Release store in `restart_after_fork`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// In a fork child: the parent's worker threads do not exist here, and
    /// its rings may hold half-written records. Start a fresh engine with the
    /// same configuration and scopes, carrying the counts over, and leak the
    /// old one (its locks or memory may be in any state).
    #[cold]
    fn restart_after_fork(&self) {
        let _g = self.restart.lock();
        let generation = fork::generation();
        if self.generation.load(Ordering::Relaxed) == generation {
            return;
        }
        let old = self.inner();
        // The parent's thread handles name threads that do not exist here:
        // keep them, never join them.
        fork::retain(Box::new(std::mem::take(&mut *self.threads.lock())));
        let scopes = fork::read_inherited(&old.scopes);
        let instruments = fork::read_inherited(&old.instruments);
        let config = old.config.clone();
        let closed = old.closed.load(Ordering::Relaxed);
        let carried = old.stats();
        if closed {
            // A pipeline shut down before the fork stays shut down.
            self.generation.store(generation, Ordering::Relaxed);
            return;
        }
        match Inner::launch(config, old.id, scopes, Some(carried)) {
            Ok((inner, threads)) => {
                *self.threads.lock() = threads;
                // The host's instrument handles point at these: the child
                // collects them with a collector of its own (the parent's
                // thread does not exist here).
                let has_instruments = !instruments.is_empty() || inner.config.self_metrics;
                *inner.instruments.write() = instruments;
                self.collector.store(false, Ordering::Release);
                if has_instruments {
                    self.start_collector_for(inner.clone());
                }
                // Release pairs with the Acquire load in `inner`.
                let previous = self
                    .current
                    .swap(Arc::into_raw(inner).cast_mut(), Ordering::AcqRel);
                // SAFETY: `previous` came from `Arc::into_raw` and we owned
                // its count; the `Arc` is kept forever, never dropped, so
                // references to the old engine stay valid.
                fork::retain(Box::new(unsafe { Arc::from_raw(previous) }));
            }
            Err(e) => {
                *old.last_error.lock() = Some(format!("restart after fork: {e}"));
                old.closed.store(true, Ordering::SeqCst);
            }
        }
        self.generation.store(generation, Ordering::Relaxed);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(mut server) = self.prometheus.lock().take() {
            server.stop();
        }
        if fork::generation() != self.generation.load(Ordering::Relaxed) {
            // A fork child that never used the pipeline: nothing of it runs
            // here, and the parent owns its work. Keep the parent's engine.
            fork::retain(Box::new(std::mem::take(&mut *self.threads.lock())));
            // SAFETY: from `Arc::into_raw`; kept forever, never dropped.
            fork::retain(Box::new(unsafe {
                Arc::from_raw(self.current.load(Ordering::Acquire))
            }));
            return;
        }
        let inner = self.inner();
        if !inner.closed.load(Ordering::Acquire) {
            let _ = inner.shutdown(&self.threads, Duration::from_secs(5));
        }
        // SAFETY: the pointer came from `Arc::into_raw` and this is the last
        // use of it; the workers are joined and hold their own clones.
        drop(unsafe { Arc::from_raw(self.current.load(Ordering::Acquire)) });
    }
}

impl Inner {
    /// Counts a refusal in the calling thread's shard and hands it back.
    #[cold]
    fn refuse(&self, e: RecordError) -> RecordError {
        self.shards[thread_shard(self.shards.len())]
            .counters
            .drops
            .refuse(e)
    }

    /// The record path shared by every signal: checks, limits, the memory
    /// budget, the ring claim, the encode in place and the commit.
    #[inline(always)]
    fn record_with(
        &self,
        scope: &Scope,
        signal: Signal,
        len: usize,
        encode: impl FnOnce(&mut [u8]),
    ) -> Result<(), RecordError> {
        let inner = self;
        let shard = &inner.shards[thread_shard(inner.shards.len())];
        if scope.pipeline != inner.id
            || scope.id >= inner.scope_count.load(Ordering::Acquire)
            || scope.id > SCOPE_MASK
        {
            return Err(shard.counters.drops.refuse(RecordError::InvalidScope));
        }
        if len > inner.max_record {
            return Err(shard.counters.drops.refuse(RecordError::TooLarge));
        }
        if !inner.admit(len, scope.id) {
            return Err(shard.counters.drops.refuse(RecordError::RateLimited));
        }
        let tag = scope.id | (signal as u32) << SIGNAL_SHIFT;
        let mut deadline = None;
        // Held until the record is in the ring; dropped (released) on every
        // refusal below.
        let reservation = inner.reserve(len, shard, &mut deadline)?;
        let mut encode = Some(encode);
        loop {
            match shard.ring.claim(len, tag) {
                Ok(mut claim) => {
                    // SeqCst pairs with the SeqCst store of `closed` and load
                    // of the ring tail in `shutdown`: either shutdown sees our
                    // claim and drains it, or we see `closed` and back out.
                    if inner.closed.load(Ordering::SeqCst) {
                        drop(claim);
                        return Err(shard.counters.drops.refuse(RecordError::Shutdown));
                    }
                    if let Some(f) = encode.take() {
                        f(claim.buf());
                    }
                    let (before, after) = claim.fill();
                    claim.commit(tag);
                    // The worker releases it when the record leaves.
                    reservation.keep();
                    let n =
                        shard.counters.accepted[signal as usize].fetch_add(1, Ordering::Relaxed);
                    if n % 64 == 0 {
                        inner.sample(shard);
                    }
                    inner.maybe_wake(shard, before, after);
                    return Ok(());
                }
                Err(ClaimError::TooLarge) => {
                    return Err(shard.counters.drops.refuse(RecordError::TooLarge));
                }
                Err(ClaimError::Full) => {
                    if inner.closed.load(Ordering::Relaxed) {
                        return Err(shard.counters.drops.refuse(RecordError::Shutdown));
                    }
                    // Block waits until one deadline, set at the first full
                    // ring; DropNewest refuses at once.
                    let Policy::Block { max_wait } = inner.config.policy else {
                        return Err(shard.counters.drops.refuse(RecordError::Full));
                    };
                    let until = *deadline.get_or_insert_with(|| Instant::now() + max_wait);
                    if Instant::now() >= until {
                        return Err(shard.counters.drops.refuse(RecordError::Full));
                    }
                    inner.wait_for_space(shard, until);
                }
            }
        }
    }

    fn scope(&self, name: &str, version: &str, attributes: &[(String, OwnedValue)]) -> Scope {
        let encoded = Bytes::from(batch::scope_field(name, version, attributes));
        let mut scopes = self.scopes.write();
        let id = match scopes.iter().position(|(_, _, e)| *e == encoded) {
            Some(i) => i,
            None => {
                scopes.push((name.to_owned(), version.to_owned(), encoded));
                self.scope_count
                    .store(scopes.len() as u32, Ordering::Release);
                scopes.len() - 1
            }
        };
        Scope {
            id: id as u32,
            pipeline: self.id,
        }
    }

    /// Records otlpflow's own metrics as OTLP data points through itself
    /// (`PipelineBuilder::self_metrics`), named after the OpenTelemetry
    /// semantic conventions for SDK self-monitoring where one fits.
    fn collect_self_metrics(&self) -> u64 {
        use crate::record::{KeyValue, MetricData, MetricPoint, Number, Temporality, Value};
        let scope = *self
            .self_scope
            .get_or_init(|| self.scope("otlpflow", crate::VERSION, &[]));
        let s = self.stats();
        let now = crate::workload::now_unix_nano();
        let start = self.start_unix_nano;
        let mut n = 0;
        let mut emit = |name: &str, unit: &str, attrs: &[KeyValue<'_>], value: u64, sum: bool| {
            let data = if sum {
                MetricData::Sum {
                    value: Number::I64(value as i64),
                    monotonic: true,
                    temporality: Temporality::Cumulative,
                }
            } else {
                MetricData::Gauge(Number::I64(value as i64))
            };
            let p = MetricPoint {
                name,
                description: "",
                unit,
                attributes: attrs,
                start_time_unix_nano: if sum { start } else { 0 },
                time_unix_nano: now,
                flags: 0,
                data,
            };
            let len = p.encoded_len();
            n += self
                .record_with(&scope, Signal::Metrics, len, |b| p.encode(b))
                .is_ok() as u64;
        };
        let component = KeyValue::new("otel.component.type", Value::Str("otlpflow"));
        for (signal, processed, exported) in [
            (
                "span",
                "otel.sdk.processor.span.processed",
                "otel.sdk.exporter.span.exported",
            ),
            (
                "log",
                "otel.sdk.processor.log.processed",
                "otel.sdk.exporter.log.exported",
            ),
            (
                "metric_data_point",
                "otel.sdk.processor.metric_data_point.processed",
                "otel.sdk.exporter.metric_data_point.exported",
            ),
        ] {
            let i = match signal {
                "span" => 0,
                "log" => 1,
                _ => 2,
            };
            let unit = match signal {
                "span" => "{span}",
                "log" => "{log_record}",
                _ => "{data_point}",
            };
            emit(processed, unit, &[component], s.accepted_by_signal[i], true);
            emit(exported, unit, &[component], s.exported_by_signal[i], true);
        }
        // Refusals and failures are not kept per signal: one otlpflow
        // metric each, by reason (`error.type`), as the conventions name it.
        let d = &s.dropped;
        for (metric, reasons) in [
            (
                "otlpflow.records.dropped",
                [
                    ("queue_full", d.full),
                    ("memory", d.memory),
                    ("rate_limited", d.rate_limited),
                    ("too_large", d.too_large),
                    ("shutdown", d.shutdown),
                    ("invalid", d.invalid),
                ],
            ),
            (
                "otlpflow.records.failed",
                [
                    ("permanent", s.failed_permanent),
                    ("retries_exhausted", s.failed_exhausted),
                    ("evicted", s.failed_evicted),
                    ("shutdown", s.failed_shutdown),
                    ("fork", s.failed_fork),
                    ("rejected", s.rejected),
                ],
            ),
        ] {
            for (reason, v) in reasons {
                let attrs = [component, KeyValue::new("error.type", Value::Str(reason))];
                emit(metric, "{record}", &attrs, v, true);
            }
        }
        emit(
            "otlpflow.records.in_flight",
            "{record}",
            &[component],
            s.in_flight,
            false,
        );
        emit(
            "otlpflow.export.requests",
            "{request}",
            &[component],
            s.requests,
            true,
        );
        emit(
            "otlpflow.export.concurrency_limit",
            "{request}",
            &[component],
            s.concurrency_limit,
            false,
        );
        emit(
            "otlpflow.export.latency.p99",
            "ns",
            &[component],
            s.export_latency.p99_ns,
            false,
        );
        emit(
            "otlpflow.end_to_end.latency.p99",
            "ns",
            &[component],
            s.e2e_latency.p99_ns,
            false,
        );
        emit(
            "otlpflow.ring.fill.max",
            "%",
            &[component],
            s.ring_fill_max_pct,
            false,
        );
        emit(
            "otlpflow.memory.used",
            "By",
            &[component],
            s.memory_used,
            false,
        );
        n
    }

    /// Collects the instruments into data points through the record path.
    fn collect_metrics(&self) -> u64 {
        let _one = self.collect_lock.lock();
        let instruments = self.instruments.read().clone();
        let mut n = 0;
        if self.config.self_metrics {
            n += self.collect_self_metrics();
        }
        for i in &instruments {
            i.collect(self.config.temporality, &mut |point, attrs| {
                let len = point.encoded_len();
                let r = self.record_with(&i.scope, Signal::Metrics, len + attrs.len(), |buf| {
                    point.encode(&mut buf[..len]);
                    // The series' attributes, already encoded, close the
                    // data point (protobuf fields may come in any order).
                    buf[len..].copy_from_slice(attrs);
                });
                n += r.is_ok() as u64;
            });
        }
        n
    }

    /// Builds an engine and starts its workers. `scopes` and `carried` (the
    /// counters of the engine it replaces after a fork) are kept.
    fn launch(
        config: Config,
        id: u64,
        scopes: Vec<(String, String, Bytes)>,
        carried: Option<Stats>,
    ) -> Result<(Arc<Inner>, Vec<JoinHandle<()>>), Error> {
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
                WorkerShared {
                    mode: AtomicU32::new(AWAKE),
                    notify: tokio::sync::Notify::new(),
                    counters,
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
        let inner = Arc::new(Inner {
            id,
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
            budget: config
                .flow
                .memory_budget
                .map(crate::flow::MemoryBudget::new),
            budget_waiters: AtomicU32::new(0),
            budget_lock: Mutex::new(()),
            budget_cv: Condvar::new(),
            batch_limit,
            max_record,
            resource_field,
            config,
            shards,
            workers,
            scope_count: AtomicU32::new(scopes.len() as u32),
            scopes: RwLock::new(scopes),
            closed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stop_deadline_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            flush_requested: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            flush_cv: Condvar::new(),
            last_error: Mutex::new(None),
            start_unix_nano: crate::workload::now_unix_nano(),
            self_scope: std::sync::OnceLock::new(),
            instruments: RwLock::new(Vec::new()),
            collect_lock: Mutex::new(()),
            collector_cv: Condvar::new(),
        });
        if let Some(c) = carried {
            inner.carry(&c);
        }
        let mut threads = Vec::new();
        for w in 0..inner.config.workers {
            let consumers: Vec<(usize, Consumer)> = inner
                .shards
                .iter()
                .enumerate()
                .filter(|(_, s)| s.worker == w)
                // SAFETY: each shard is assigned to exactly one worker, and
                // this is the only place consumers are made.
                .map(|(i, s)| (i, unsafe { Consumer::new(s.ring.clone()) }))
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
    /// stats continue the parent's: what the parent had in flight at the
    /// fork is counted as failed (`failed_fork`), since the child cannot
    /// send it (the parent does).
    fn carry(&self, c: &Stats) {
        let shard = &self.shards[0].counters;
        for (i, a) in shard.accepted.iter().enumerate() {
            a.store(c.accepted_by_signal[i], Ordering::Relaxed);
        }
        shard.drops.full.store(c.dropped.full, Ordering::Relaxed);
        shard
            .drops
            .too_large
            .store(c.dropped.too_large, Ordering::Relaxed);
        shard
            .drops
            .shutdown
            .store(c.dropped.shutdown, Ordering::Relaxed);
        shard
            .drops
            .invalid
            .store(c.dropped.invalid, Ordering::Relaxed);
        shard
            .drops
            .rate_limited
            .store(c.dropped.rate_limited, Ordering::Relaxed);
        shard
            .drops
            .memory
            .store(c.dropped.memory, Ordering::Relaxed);
        let w = &self.workers[0].counters;
        w.exported.store(c.exported, Ordering::Relaxed);
        for (i, e) in w.exported_by_signal.iter().enumerate() {
            e.store(c.exported_by_signal[i], Ordering::Relaxed);
        }
        w.failed.store(
            // Exhausted and evicted are parts of `failed` (carried below).
            c.failed - c.failed_shutdown - c.failed_fork,
            Ordering::Relaxed,
        );
        w.failed_shutdown
            .store(c.failed_shutdown, Ordering::Relaxed);
        w.failed_fork
            .store(c.failed_fork + c.in_flight, Ordering::Relaxed);
        w.failed_exhausted
            .store(c.failed_exhausted, Ordering::Relaxed);
        w.failed_evicted.store(c.failed_evicted, Ordering::Relaxed);
        w.rejected.store(c.rejected, Ordering::Relaxed);
        w.requests.store(c.requests, Ordering::Relaxed);
        w.retries.store(c.retries, Ordering::Relaxed);
        w.request_errors.store(c.request_errors, Ordering::Relaxed);
        w.bytes_raw.store(c.bytes_raw, Ordering::Relaxed);
        w.bytes_wire.store(c.bytes_wire, Ordering::Relaxed);
    }

    fn stats(&self) -> Stats {
        let mut s = stats::snapshot(
            self.shards
                .iter()
                .map(|s| (&s.counters, s.ring.used(), s.ring.capacity())),
            self.workers.iter().map(|w| &w.counters),
        );
        if let Some(b) = &self.budget {
            s.memory_used = b.used();
            s.memory_peak = b.peak();
        }
        s
    }

    /// Reserves a record's bytes against the memory budget, if there is one.
    /// Over it, `Block` parks the producer until memory is released or the
    /// deadline (shared with the ring's wait) passes; `DropNewest` refuses.
    #[inline]
    fn reserve<'a>(
        &'a self,
        len: usize,
        shard: &Shard,
        deadline: &mut Option<Instant>,
    ) -> Result<Reservation<'a>, RecordError> {
        let Some(budget) = &self.budget else {
            return Ok(Reservation { budget: None, n: 0 });
        };
        let n = len as u64;
        while !budget.try_reserve(n) {
            let Policy::Block { max_wait } = self.config.policy else {
                return Err(shard.counters.drops.refuse(RecordError::Memory));
            };
            let until = *deadline.get_or_insert_with(|| Instant::now() + max_wait);
            if Instant::now() >= until {
                return Err(shard.counters.drops.refuse(RecordError::Memory));
            }
            if self.closed.load(Ordering::Relaxed) {
                return Err(shard.counters.drops.refuse(RecordError::Shutdown));
            }
            self.wait_for_memory(until);
        }
        Ok(Reservation {
            budget: Some(budget),
            n,
        })
    }

    #[cold]
    fn wait_for_memory(&self, until: Instant) {
        // Make sure every worker is draining (a lingering batch holds memory
        // too) before we sleep.
        for w in self.workers.iter() {
            if w.mode.swap(AWAKE, Ordering::SeqCst) != AWAKE {
                w.notify.notify_one();
            }
        }
        let mut guard = self.budget_lock.lock();
        // SeqCst pairs with the fence in `release_memory`: either the
        // releaser sees us waiting, or the caller's retry sees the memory.
        self.budget_waiters.fetch_add(1, Ordering::SeqCst);
        // A short timed wait bounds the cost of a missed wake-up.
        let until = until.min(Instant::now() + Duration::from_millis(5));
        self.budget_cv.wait_until(&mut guard, until);
        self.budget_waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Offers this record's commit time as the shard's end-to-end latency
    /// sample (kept only if none is waiting).
    #[cold]
    fn sample(&self, shard: &Shard) {
        if shard.counters.sample_ns.load(Ordering::Relaxed) == 0 {
            let now = self.epoch.elapsed().as_nanos() as u64;
            // Release: the worker's Acquire swap sees a sample only after
            // the record's commit, which came before it.
            shard
                .counters
                .sample_ns
                .store(now.max(1), Ordering::Release);
        }
    }

    /// Returns bytes to the budget and wakes producers parked on it.
    fn release_memory(&self, n: u64) {
        let Some(b) = &self.budget else { return };
        b.release(n);
        fence(Ordering::SeqCst);
        if self.budget_waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.budget_lock.lock();
            self.budget_cv.notify_all();
        }
    }

    /// Shutdown: refuse, flush until `deadline`, stop and join the workers.
    fn shutdown(
        &self,
        threads: &Mutex<Vec<JoinHandle<()>>>,
        timeout: Duration,
    ) -> Result<Stats, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::shutdown());
        }
        // The instruments' last values go out with the rest.
        self.collect_metrics();
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(Error::shutdown());
        }
        {
            let _g = self.collect_lock.lock();
            self.collector_cv.notify_all();
        }
        let deadline = Instant::now() + timeout;
        let deadline_ns = (deadline - self.epoch).as_nanos() as u64;
        self.stop_deadline_ns
            .store(deadline_ns.max(1), Ordering::SeqCst);
        // Wake producers parked on full rings: they will see `closed`.
        for s in self.shards.iter() {
            let _g = s.lock.lock();
            s.space.notify_all();
        }
        let flushed = self.flush_until(deadline);
        self.stop.store(true, Ordering::SeqCst);
        self.wake_all();
        let threads = std::mem::take(&mut *threads.lock());
        for t in threads {
            if t.join().is_err() {
                return Err(Error::internal("a worker thread panicked"));
            }
        }
        let stats = self.stats();
        match flushed {
            Err(e) if !e.is_timeout() => Err(e),
            _ => Ok(stats),
        }
    }

    /// Applies the ingest token buckets, if configured. A record refused by
    /// the byte bucket after the record bucket admitted it has used a record
    /// token: that is the conservative side of the limit.
    #[inline]
    fn admit(&self, len: usize, scope: u32) -> bool {
        if let Some(buckets) = &self.scope_buckets {
            let i = (scope as usize).min(buckets.len() - 1);
            if !buckets[i].try_acquire(1) {
                return false;
            }
        }
        if let Some(w) = &self.window {
            if !w.try_acquire(1) {
                return false;
            }
        }
        if let Some(b) = &self.record_bucket {
            if !b.try_acquire(1) {
                return false;
            }
        }
        match &self.byte_bucket {
            Some(b) => b.try_acquire(len as u64),
            None => true,
        }
    }

    /// Wakes the shard's worker if it sleeps idle, or lingers and the ring
    /// just crossed its high-water mark. Called after every commit; costs one
    /// load of a line that changes only when the worker sleeps or wakes.
    #[inline]
    fn maybe_wake(&self, shard: &Shard, before: usize, after: usize) {
        let w = &self.workers[shard.worker];
        // SeqCst pairs with the worker's SeqCst store of `mode` before its
        // final check of the rings (`worker::sleep`): either it sees our
        // record, or we see it asleep.
        let mode = w.mode.load(Ordering::SeqCst);
        if mode == AWAKE {
            return;
        }
        let crossed = before < shard.high_water && after >= shard.high_water;
        if (mode == IDLE || crossed) && w.mode.swap(AWAKE, Ordering::SeqCst) != AWAKE {
            w.notify.notify_one();
        }
    }

    fn wake_all(&self) {
        for w in self.workers.iter() {
            w.mode.store(AWAKE, Ordering::SeqCst);
            w.notify.notify_one();
        }
    }

    /// Parks the producer until the worker frees space or `deadline` passes.
    #[cold]
    fn wait_for_space(&self, shard: &Shard, deadline: Instant) {
        // Make sure the worker is draining before we sleep.
        let w = &self.workers[shard.worker];
        if w.mode.swap(AWAKE, Ordering::SeqCst) != AWAKE {
            w.notify.notify_one();
        }
        let mut guard = shard.lock.lock();
        // SeqCst pairs with the worker's fence after it moves `head`: either
        // it sees us waiting, or our re-check below sees the space.
        shard.waiters.fetch_add(1, Ordering::SeqCst);
        // Hysteresis: once a ring is full, producers wait until the worker
        // has drained it below the low-water mark, so that a full ring costs
        // one wake-up per half ring rather than one per record.
        if shard.ring.used() > shard.low_water && !self.closed.load(Ordering::SeqCst) {
            // A short timed wait bounds the cost of any missed wake-up.
            let until = deadline.min(Instant::now() + Duration::from_millis(5));
            shard.space.wait_until(&mut guard, until);
            shard.waiters.fetch_sub(1, Ordering::Relaxed);
        } else {
            // Below low water yet the claim failed: the record needs the
            // wrap's padding too. Let the worker run rather than spin.
            shard.waiters.fetch_sub(1, Ordering::Relaxed);
            drop(guard);
            std::thread::yield_now();
        }
    }

    /// Asks every worker to flush and waits for all of them.
    fn flush_until(&self, deadline: Instant) -> Result<(), Error> {
        let epoch = self.flush_requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake_all();
        let mut guard = self.flush_lock.lock();
        loop {
            let done = self
                .workers
                .iter()
                .all(|w| w.flush_done.load(Ordering::Acquire) >= epoch);
            if done {
                return Ok(());
            }
            if self.flush_cv.wait_until(&mut guard, deadline).timed_out() {
                let done = self
                    .workers
                    .iter()
                    .all(|w| w.flush_done.load(Ordering::Acquire) >= epoch);
                return if done {
                    Ok(())
                } else {
                    Err(Error::timeout(
                        "flush: records still in flight at the deadline",
                    ))
                };
            }
        }
    }

    fn stop_deadline(&self) -> Option<Instant> {
        match self.stop_deadline_ns.load(Ordering::SeqCst) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }
}
