//! The engine: host threads record into per-core shard rings; worker threads
//! (one per core by default, each owning a disjoint set of shards) drain
//! them, batch, frame, compress and export.
//!
//! Read it in data-path order: `pipeline` (the public API and `start`),
//! `record_path` (the hot path, with `producer`: each thread's shard and
//! counters), `worker` (drain, dispatch, export task),
//! `control` (flush and shutdown); `launch` builds an engine, `core` holds
//! what every clone of a pipeline shares, `fork` keeps both sides of a
//! fork working, `self_metrics` collects the instruments.

pub(crate) mod batch;
mod control;
mod core;
pub mod fork;
mod lanes;
mod launch;
mod pipeline;
mod producer;
mod receipt;
mod record_path;
mod scopes;
pub(crate) use scopes::OVERFLOW_SCOPE;
mod self_metrics;
mod send;
mod template;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

pub use receipt::{Delivery, Receipt};
pub use send::{Acked, Recordable};
pub use template::SpanTemplate;

use crate::config::Config;
use crate::ring::Ring;
use crate::stats::{ShardCounters, WorkerCounters};

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
struct WorkerState {
    /// `AWAKE`, `IDLE` or `LINGER`; set by the worker before it sleeps,
    /// swapped back to `AWAKE` by whoever wakes it.
    mode: AtomicU32,
    notify: tokio::sync::Notify,
    counters: WorkerCounters,
    /// Per lane (a signal's endpoint): what this worker sent it. The
    /// worker appends when lanes are added; `endpoint_stats` reads.
    endpoints: Mutex<Vec<Arc<crate::stats::EndpointCounters>>>,
    /// The last flush epoch this worker has completed.
    flush_done: AtomicU64,
}

/// An instrumentation scope registered with a pipeline: a cheap, `Copy`
/// handle naming the library that records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    id: u32,
    pipeline: u64,
}

impl Scope {
    /// The handle as two numbers (scope id, pipeline id), for bindings that
    /// keep it in a plain struct. Handing back other numbers is safe: a
    /// handle that does not match the pipeline is refused with
    /// [`RecordError::InvalidScope`](crate::RecordError::InvalidScope).
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

/// One running engine: its configuration, shards, workers, limits and
/// control state. A fork child replaces it whole (see `fork`).
struct Engine {
    id: u64,
    config: Config,
    /// Exporter settings (endpoint, TLS, pool) by lane, one lane per
    /// endpoint of each signal, and each signal's routing over its lanes.
    lanes: lanes::Lanes,
    shards: Box<[Shard]>,
    /// Every recording thread's own counters.
    producers: producer::Producers,
    workers: Box<[WorkerState]>,
    /// When the engine started (cumulative sums start here).
    start_unix_nano: u64,
    /// The scope of otlpflow's own metrics, registered at first use.
    self_scope: std::sync::OnceLock<Scope>,
    /// Instruments, collected every `metrics_interval`.
    instruments: RwLock<crate::metrics::Instruments>,
    /// One collection at a time.
    collect_lock: Mutex<()>,
    /// Wakes the collector thread early (shutdown).
    collector_cv: Condvar,
    /// Encoded `scope` fields by scope id, append-only.
    scopes: RwLock<scopes::ScopeTable>,
    /// `scopes.len()`, readable without the lock. Release/Acquire: a scope
    /// id is accepted only after its entry is in `scopes`.
    scope_count: AtomicU32,
    /// `scope()` calls answered with the overflow scope (`max_scopes`).
    scopes_overflowed: AtomicU64,
    /// The encoded `resource` field of every request; replaced at most
    /// once, by `Pipeline::adopt_resource`, while `resource_adoptable`.
    resource_field: RwLock<Bytes>,
    /// Set while the resource is the default one nobody configured.
    resource_adoptable: AtomicBool,
    /// A batch's encoded records stay under this, so that the request,
    /// framed and compressed, stays under `max_request_bytes`.
    batch_limit: usize,
    /// Records larger than this are refused at once (`TooLarge`).
    max_record: usize,
    /// Whether any of the ingest limits below is set (one test on the hot
    /// path instead of four).
    ingest_limited: bool,
    /// Ingest limits: records per second and bytes per second.
    record_bucket: Option<crate::flow::TokenBucket>,
    byte_bucket: Option<crate::flow::TokenBucket>,
    /// Ingest: records per sliding window.
    window: Option<crate::flow::SlidingWindow>,
    /// Ingest: one bucket per scope id (the last shared by the rest).
    scope_buckets: Option<Box<[crate::flow::TokenBucket]>>,
    /// Egress pacing: wire bytes per second, shared by all workers.
    egress: Option<crate::flow::TokenBucket>,
    /// The system's memory use against `system_memory_limit`, when set
    /// (sampled by the `otlpflow-memory` thread).
    system_memory: Option<Arc<crate::flow::SystemMemory>>,
    /// The memory budget, when configured, and the producers parked on it.
    budget: Option<crate::flow::MemoryBudget>,
    budget_waiters: AtomicU32,
    budget_lock: Mutex<()>,
    budget_cv: Condvar,
    /// Async senders waiting for ring space or memory (`Pipeline::send`),
    /// and what wakes them: a drain, a release of memory, the end of
    /// system memory pressure, shutdown.
    async_waiters: AtomicU32,
    async_room: tokio::sync::Notify,
    /// The disk spool, when configured (not in a fork child: the parent
    /// keeps the directory's lock).
    spool: Option<Arc<crate::spool::Spool>>,
    /// Receipts with records still on their way (`record_*_acked`).
    receipts: receipt::ReceiptTable,
    /// The snapshots `stats()` computes its last-interval rates against.
    rate_window: Mutex<crate::stats::RateWindow>,
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
    core: Arc<PipelineCore>,
}

/// What every clone of a pipeline points at. The engine is replaced only in
/// a forked child, where the parent's workers do not exist (see `fork`).
pub(crate) struct PipelineCore {
    /// The running engine.
    engine: fork::EngineSlot<Engine>,
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
