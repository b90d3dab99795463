//! The counters themselves: written by producers (per shard) and by
//! workers (per worker), without locks, each where the thing it counts
//! happens; read by [`super::snapshot`].
//!
//! A record is counted once on each side of every step it takes:
//! `offered` when the host hands it in, then either `dropped[reason]` or
//! `accepted` (producers); `drained` when a worker takes it out of a ring,
//! which also makes it `held`; then `exported`, `rejected` or
//! `failed[reason]`, each of which releases it from `held` (workers). No
//! count is computed from the others, so the accounting identity checked
//! by [`crate::Stats::check_identity`] can fail when a path miscounts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use super::histogram::Histogram;
use super::reasons::{DropReason, FailReason};
use crate::error::RecordError;
use crate::record::{PerSignal, Signal};

/// One signal's producer counts, on a cache line of their own: a record
/// costs two relaxed adds on a line its shard's producers already own.
#[derive(Default)]
pub(crate) struct SignalCounters {
    /// Records the host handed in (accepted or refused).
    pub offered: AtomicU64,
    /// Records committed into the ring.
    pub accepted: AtomicU64,
}

/// Counters written by the producers of one shard.
#[derive(Default)]
pub(crate) struct ShardCounters {
    /// Per signal: offered and accepted.
    pub signals: PerSignal<CachePadded<SignalCounters>>,
    /// A sampled record's commit time (ns since the engine's epoch; 0:
    /// none waiting). Set by a producer every 64th record when empty,
    /// taken by the worker before it drains the ring.
    pub sample_ns: CachePadded<AtomicU64>,
    /// Refusals by [`DropReason`]; rare, so they share a line.
    pub drops: CachePadded<[AtomicU64; DropReason::COUNT]>,
}

impl ShardCounters {
    /// Counts a record offered for `signal`.
    #[inline]
    pub fn offer(&self, signal: Signal) {
        self.signals[signal].offered.fetch_add(1, Relaxed);
    }

    /// Takes back an offer the async path will make again (it counts a
    /// record once, however many times it waits for room).
    #[cold]
    pub fn unoffer(&self, signal: Signal) {
        self.signals[signal].offered.fetch_sub(1, Relaxed);
    }

    /// Counts a record of `signal` committed into the ring; returns how
    /// many were before it (the end-to-end sampler takes every 64th).
    #[inline]
    pub fn accept(&self, signal: Signal) -> u64 {
        self.signals[signal].accepted.fetch_add(1, Relaxed)
    }

    /// Counts an offered record's refusal under its reason and hands the
    /// error back, so that the record path can `return Err(refuse(e))`.
    #[cold]
    pub fn refuse(&self, e: RecordError) -> RecordError {
        self.drops[DropReason::of(e).index()].fetch_add(1, Relaxed);
        e
    }
}

/// One producer thread's counts of one engine's records: written by that
/// thread alone, so a count is a plain load and store, not a locked
/// read-modify-write (two of those per record were a third of the record
/// path's time). Read, like every counter, by [`super::snapshot`].
#[derive(Default)]
pub(crate) struct ThreadCounters {
    /// Per signal: offered and accepted.
    pub signals: PerSignal<SignalCounters>,
}

/// Adds one to a counter only the calling thread writes; returns its value
/// before. Relaxed: readers only sum, and a count read one behind is one a
/// snapshot taken a moment earlier would show.
#[inline]
fn bump(c: &AtomicU64) -> u64 {
    let n = c.load(Relaxed);
    c.store(n.wrapping_add(1), Relaxed);
    n
}

impl ThreadCounters {
    /// Counts a record offered for `signal`. The caller owns these counters.
    #[inline]
    pub fn offer(&self, signal: Signal) {
        bump(&self.signals[signal].offered);
    }

    /// Takes back an offer (see [`ShardCounters::unoffer`]).
    #[cold]
    pub fn unoffer(&self, signal: Signal) {
        let c = &self.signals[signal].offered;
        c.store(c.load(Relaxed).wrapping_sub(1), Relaxed);
    }

    /// Counts a record of `signal` accepted; returns how many were before it.
    #[inline]
    pub fn accept(&self, signal: Signal) -> u64 {
        bump(&self.signals[signal].accepted)
    }
}

/// Counters written by one worker thread (and its export tasks, which run on
/// the same thread).
#[derive(Default)]
pub(crate) struct WorkerCounters {
    /// Records taken out of the rings by this worker.
    pub drained: AtomicU64,
    /// Records drained and not yet exported, rejected or failed: in a
    /// batch, a request in flight, or one waiting for its retry.
    pub held: AtomicU64,
    /// Records acknowledged by the receiver, by signal.
    pub exported: PerSignal<AtomicU64>,
    /// Records the server rejected through partial success.
    pub rejected: AtomicU64,
    /// Records written to the disk spool.
    pub spooled: AtomicU64,
    /// Records failed for good, by [`FailReason`].
    pub failed: [AtomicU64; FailReason::COUNT],
    /// Export requests sent (each attempt counts).
    pub requests: AtomicU64,
    /// Attempts that were retried.
    pub retries: AtomicU64,
    /// Requests that failed (each attempt counts).
    pub request_errors: AtomicU64,
    /// Failed attempts since the last success; 0 after a success.
    pub consecutive_failures: AtomicU64,
    /// The worker's current batch target (records); written by the worker's
    /// export tasks when the batch size adapts.
    pub batch_target: AtomicU64,
    /// Smoothed export round trip, ns (EWMA, weight 1/8).
    pub latency_ewma_ns: AtomicU64,
    /// Acknowledged requests since the target last moved.
    pub since_adjust: AtomicU64,
    /// Uncompressed request bytes (the OTLP message).
    pub bytes_raw: AtomicU64,
    /// Request bytes on the wire (compressed message with gRPC framing).
    pub bytes_wire: AtomicU64,
    /// Requests currently in flight.
    pub in_flight_requests: AtomicU64,
    /// The worker's limit on requests in flight (moves when adaptive).
    pub concurrency_limit: AtomicU64,
    /// Signals (bit per signal) whose every endpoint's circuit breaker is
    /// open or probing.
    pub breaker_state: AtomicU64,
    /// Endpoints (of any signal) whose circuit breaker is open or probing.
    pub breakers_open: AtomicU64,
    /// Signals (bit per signal) this worker has sent requests for.
    pub signals_used: AtomicU64,
    /// Times the circuit breaker opened.
    pub breaker_opened: AtomicU64,
    /// Export round-trip latency.
    pub export_latency: Histogram,
    /// Record-to-acknowledgement latency of sampled records.
    pub e2e_latency: Histogram,
}

impl WorkerCounters {
    /// `n` records taken out of the rings: now held by this worker.
    pub fn drain(&self, n: u64) {
        self.drained.fetch_add(n, Relaxed);
        self.held.fetch_add(n, Relaxed);
    }

    /// `n` held records of `signal` acknowledged by the receiver.
    pub fn export(&self, signal: Signal, n: u64) {
        self.exported[signal].fetch_add(n, Relaxed);
        self.held.fetch_sub(n, Relaxed);
    }

    /// `n` held records rejected by the receiver (partial success).
    pub fn reject(&self, n: u64) {
        self.rejected.fetch_add(n, Relaxed);
        self.held.fetch_sub(n, Relaxed);
    }

    /// `n` held records written to the disk spool: this process is done
    /// with them (the spool replays them, here or in a later process).
    pub fn spool(&self, n: u64) {
        self.spooled.fetch_add(n, Relaxed);
        self.held.fetch_sub(n, Relaxed);
    }

    /// `n` held records failed for good.
    pub fn fail(&self, reason: FailReason, n: u64) {
        self.failed[reason.index()].fetch_add(n, Relaxed);
        self.held.fetch_sub(n, Relaxed);
    }
}
