//! Self-monitoring: counters and latency histograms, written by producers and
//! workers without locks and read at any time by [`crate::Pipeline::stats`].
//!
//! Producers count into their shard's counters, each worker into its own
//! cache-padded block; a snapshot sums them. Nothing is reset on read: rates
//! come from the difference of two snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// Counters written by the producers of one shard.
#[derive(Default)]
pub(crate) struct ShardCounters {
    /// Records committed into the ring. Written by producers on every record
    /// (the only per-record RMW besides the ring's tail CAS).
    /// One counter per signal (traces, logs, metrics), each on its line.
    pub accepted: [CachePadded<AtomicU64>; 3],
    /// A sampled record's commit time (ns since the engine's epoch; 0:
    /// none waiting). Set by a producer every 64th record when empty,
    /// taken by the worker before it drains the ring.
    pub sample_ns: CachePadded<AtomicU64>,
    /// Refusals by reason; rare, so they share a line.
    pub drops: CachePadded<DropCounters>,
}

/// Records refused or lost, by reason.
#[derive(Default)]
pub(crate) struct DropCounters {
    pub full: AtomicU64,
    pub too_large: AtomicU64,
    pub shutdown: AtomicU64,
    pub invalid: AtomicU64,
    pub rate_limited: AtomicU64,
    pub memory: AtomicU64,
}

impl DropCounters {
    /// Counts a refusal under its reason and hands the error back, so that
    /// the record path can `return Err(drops.refuse(e))`.
    #[cold]
    pub fn refuse(&self, e: crate::error::RecordError) -> crate::error::RecordError {
        use crate::error::RecordError as E;
        let counter = match e {
            E::Full => &self.full,
            E::TooLarge => &self.too_large,
            E::Shutdown => &self.shutdown,
            E::InvalidScope | E::Invalid => &self.invalid,
            E::RateLimited => &self.rate_limited,
            E::Memory => &self.memory,
        };
        counter.fetch_add(1, Relaxed);
        e
    }
}

/// Counters written by one worker thread (and its export tasks, which run on
/// the same thread).
#[derive(Default)]
pub(crate) struct WorkerCounters {
    /// Records acknowledged by the receiver.
    pub exported: AtomicU64,
    /// Of `exported`, by signal (traces, logs, metrics).
    pub exported_by_signal: [AtomicU64; 3],
    /// Records whose export failed for good (permanent error or retries
    /// exhausted).
    pub failed: AtomicU64,
    /// Records lost because shutdown's deadline passed before they were sent.
    pub failed_shutdown: AtomicU64,
    /// Records a fork child inherited in flight from its parent (the parent
    /// sends them; the child counts them as failed so its identity holds).
    pub failed_fork: AtomicU64,
    /// Of `failed`: records whose retries ran out (time budget or shutdown)
    /// on a retryable error; the rest of `failed` were permanent errors.
    pub failed_exhausted: AtomicU64,
    /// Of `failed`: records of requests waiting for a retry that were
    /// dropped to make room for newer data (`RetryQueue::DropOldest`).
    pub failed_evicted: AtomicU64,
    /// Records the server rejected through partial success.
    pub rejected: AtomicU64,
    /// Records taken out of the rings by this worker.
    pub drained: AtomicU64,
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
    /// Signals (bit per signal) whose circuit breaker is open or probing.
    pub breaker_state: AtomicU64,
    /// Signals (bit per signal) this worker has sent requests for.
    pub signals_used: AtomicU64,
    /// Times the circuit breaker opened.
    pub breaker_opened: AtomicU64,
    /// Export round-trip latency.
    pub export_latency: Histogram,
    /// Record-to-acknowledgement latency of sampled records.
    pub e2e_latency: Histogram,
}

/// Sub-buckets per power of two: 2^3 = 8, so a bucket is at most 12.5% wide.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// A log-linear histogram of nanosecond values with atomic buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let mantissa = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + mantissa) as usize
}

/// The largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB + SUB_BITS as u64 - 1;
    let mantissa = i % SUB;
    let low = (SUB + mantissa) << (exp - SUB_BITS as u64);
    low + (1u64 << (exp - SUB_BITS as u64)) - 1
}

impl Histogram {
    pub fn record(&self, v: u64) {
        self.buckets[bucket_of(v)].fetch_add(1, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }

    fn add_into(&self, into: &mut [u64], max: &mut u64) {
        for (acc, b) in into.iter_mut().zip(self.buckets.iter()) {
            *acc += b.load(Relaxed);
        }
        *max = (*max).max(self.max.load(Relaxed));
    }
}

/// Percentiles of a latency distribution, in nanoseconds (upper bucket edges,
/// within 12.5%).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
}

impl Latency {
    fn from_buckets(buckets: &[u64], max: u64) -> Latency {
        let count: u64 = buckets.iter().sum();
        let at = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bucket_high(i).min(max);
                }
            }
            max
        };
        Latency {
            count,
            p50_ns: at(0.50),
            p90_ns: at(0.90),
            p99_ns: at(0.99),
            p999_ns: at(0.999),
            max_ns: max,
        }
    }
}

/// The state of the export path, from the workers' recent attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[repr(u32)]
pub enum Health {
    /// The last attempts succeeded (or none was made yet).
    Healthy = 0,
    /// Some attempts are failing, some endpoint's circuit breaker is open,
    /// or the round trips are slow.
    Degraded = 1,
    /// Every worker that has sent anything has the circuit breaker of every
    /// endpoint it uses open: nothing is getting through.
    Down = 2,
}

/// `slow_ns`: a smoothed round trip above it counts as degraded (the
/// pipeline passes half its request timeout).
pub(crate) fn health<'a>(
    workers: impl Iterator<Item = &'a WorkerCounters>,
    slow_ns: u64,
) -> Health {
    let (mut n, mut down, mut failing) = (0, 0, 0);
    // A worker that has sent nothing yet says nothing about the endpoint.
    for w in workers.filter(|w| w.requests.load(Relaxed) > 0) {
        n += 1;
        let f = w.consecutive_failures.load(Relaxed);
        let open = w.breaker_state.load(Relaxed);
        let used = w.signals_used.load(Relaxed);
        // Every endpoint this worker uses behind an open (or probing)
        // breaker: down for this worker whatever its count says. Some of
        // them: degraded.
        // (The breakers open after their threshold of failed attempts in a
        // row, per endpoint; the worker-wide count below only degrades.)
        if open != 0 && open & used == used {
            down += 1;
        } else if f > 0 || open != 0 || w.latency_ewma_ns.load(Relaxed) > slow_ns {
            failing += 1;
        }
    }
    if n > 0 && down == n {
        Health::Down
    } else if down + failing > 0 {
        Health::Degraded
    } else {
        Health::Healthy
    }
}

/// Records refused or lost, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Ring full (`DropNewest`, or `Block` after its wait).
    pub full: u64,
    /// Larger than a ring record may be.
    pub too_large: u64,
    /// Offered after shutdown began.
    pub shutdown: u64,
    /// Invalid input (a scope of another pipeline, say).
    pub invalid: u64,
    /// Over the ingest rate limit.
    pub rate_limited: u64,
    /// Over the memory budget (`DropNewest`, or `Block` after its wait).
    pub memory: u64,
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.full + self.too_large + self.shutdown + self.invalid + self.rate_limited + self.memory
    }
}

/// A snapshot of a pipeline's counters. The accounting identity:
/// `offered = accepted + dropped.total()` and
/// `accepted = exported + failed + rejected + in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Records the host tried to record.
    pub offered: u64,
    /// Records taken into a ring.
    pub accepted: u64,
    /// Of `accepted`: spans, log records, metric points.
    pub accepted_by_signal: [u64; 3],
    /// Of `exported`: spans, log records, metric points.
    pub exported_by_signal: [u64; 3],
    /// Records refused at ingest, by reason.
    pub dropped: Dropped,
    /// Records acknowledged by the receiver.
    pub exported: u64,
    /// Records whose export failed for good (shutdown losses included).
    pub failed: u64,
    /// Of `failed`, those lost because shutdown's deadline passed.
    pub failed_shutdown: u64,
    /// Of `failed`, those a fork child inherited in flight (its parent
    /// sends them).
    pub failed_fork: u64,
    /// Of `failed`, those whose retries ran out on a retryable error.
    pub failed_exhausted: u64,
    /// Of `failed`, those of requests waiting for a retry that were dropped
    /// for newer data (`RetryQueue::DropOldest`).
    pub failed_evicted: u64,
    /// Of `failed`, those refused for good by the receiver or a permanent
    /// error (bad request, untrusted certificate, ...): `failed` less the
    /// shutdown, fork, exhausted and evicted ones.
    pub failed_permanent: u64,
    /// Records the server rejected (partial success).
    pub rejected: u64,
    /// Records accepted and not yet exported, failed or rejected.
    pub in_flight: u64,
    /// Export requests sent, retries included.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// Requests that failed (each attempt counts).
    pub request_errors: u64,
    /// Requests in flight now.
    pub in_flight_requests: u64,
    /// Uncompressed OTLP bytes exported.
    pub bytes_raw: u64,
    /// Bytes sent on the wire (compressed, framed).
    pub bytes_wire: u64,
    /// Bytes waiting in the rings now.
    pub ring_bytes_used: u64,
    /// The fullest shard ring's fill, percent (see `Pipeline::ring_fill`
    /// for every shard).
    pub ring_fill_max_pct: u64,
    /// The batch target (records), averaged over workers: `max_batch_items`
    /// unless the batch size adapts.
    pub batch_target: u64,
    /// The limit on requests in flight, summed over workers (moves under
    /// adaptive concurrency).
    pub concurrency_limit: u64,
    /// Bytes held against the memory budget now (0 without a budget).
    pub memory_used: u64,
    /// The most ever held against the memory budget.
    pub memory_peak: u64,
    /// Times a worker's circuit breaker opened.
    pub breaker_opened: u64,
    /// Export round-trip latency.
    pub export_latency: Latency,
    /// End to end: from a record's commit into its ring to the receiver's
    /// acknowledgement of its request (1 record in 64 per shard sampled;
    /// a sample is attributed to the batch being filled when the worker
    /// first sees it, so it can read short by at most one batch's wait).
    pub e2e_latency: Latency,
}

pub(crate) fn snapshot<'a>(
    shards: impl Iterator<Item = (&'a ShardCounters, usize, usize)>,
    workers: impl Iterator<Item = &'a WorkerCounters>,
) -> Stats {
    let mut s = Stats::default();
    for (c, used, capacity) in shards {
        s.ring_fill_max_pct = s
            .ring_fill_max_pct
            .max((used * 100 / capacity.max(1)) as u64);
        for (i, a) in c.accepted.iter().enumerate() {
            let n = a.load(Relaxed);
            s.accepted_by_signal[i] += n;
            s.accepted += n;
        }
        s.dropped.full += c.drops.full.load(Relaxed);
        s.dropped.too_large += c.drops.too_large.load(Relaxed);
        s.dropped.shutdown += c.drops.shutdown.load(Relaxed);
        s.dropped.invalid += c.drops.invalid.load(Relaxed);
        s.dropped.rate_limited += c.drops.rate_limited.load(Relaxed);
        s.dropped.memory += c.drops.memory.load(Relaxed);
        s.ring_bytes_used += used as u64;
    }
    let mut buckets = vec![0u64; BUCKETS];
    let mut max = 0;
    let mut e2e = vec![0u64; BUCKETS];
    let mut e2e_max = 0;
    let mut n_workers = 0;
    for w in workers {
        n_workers += 1;
        s.batch_target += w.batch_target.load(Relaxed);
        s.exported += w.exported.load(Relaxed);
        for (i, e) in w.exported_by_signal.iter().enumerate() {
            s.exported_by_signal[i] += e.load(Relaxed);
        }
        s.failed +=
            w.failed.load(Relaxed) + w.failed_shutdown.load(Relaxed) + w.failed_fork.load(Relaxed);
        s.failed_shutdown += w.failed_shutdown.load(Relaxed);
        s.failed_fork += w.failed_fork.load(Relaxed);
        s.failed_exhausted += w.failed_exhausted.load(Relaxed);
        s.failed_evicted += w.failed_evicted.load(Relaxed);
        s.concurrency_limit += w.concurrency_limit.load(Relaxed);
        s.breaker_opened += w.breaker_opened.load(Relaxed);
        s.rejected += w.rejected.load(Relaxed);
        s.requests += w.requests.load(Relaxed);
        s.retries += w.retries.load(Relaxed);
        s.request_errors += w.request_errors.load(Relaxed);
        s.in_flight_requests += w.in_flight_requests.load(Relaxed);
        s.bytes_raw += w.bytes_raw.load(Relaxed);
        s.bytes_wire += w.bytes_wire.load(Relaxed);
        w.export_latency.add_into(&mut buckets, &mut max);
        w.e2e_latency.add_into(&mut e2e, &mut e2e_max);
    }
    s.offered = s.accepted + s.dropped.total();
    s.failed_permanent = s
        .failed
        .saturating_sub(s.failed_shutdown + s.failed_fork + s.failed_exhausted + s.failed_evicted);
    // Counters are read one by one while records move, so a snapshot taken
    // under load can see an export before its acceptance; clamp at zero.
    s.in_flight = s
        .accepted
        .saturating_sub(s.exported + s.failed + s.rejected);
    s.export_latency = Latency::from_buckets(&buckets, max);
    s.e2e_latency = Latency::from_buckets(&e2e, e2e_max);
    s.batch_target /= n_workers.max(1);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_within_an_eighth() {
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            123_456_789,
            u64::MAX / 3,
        ] {
            let i = bucket_of(v);
            let high = bucket_high(i);
            assert!(high >= v, "v={v} high={high}");
            assert!(
                (high - v) as f64 <= v as f64 / 8.0 + 1.0,
                "v={v} high={high}"
            );
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let mut b = vec![0; BUCKETS];
        let mut max = 0;
        h.add_into(&mut b, &mut max);
        let l = Latency::from_buckets(&b, max);
        assert_eq!(l.count, 1000);
        assert!((500_000..=570_000).contains(&l.p50_ns), "{l:?}");
        assert!((990_000..=1_000_000).contains(&l.p99_ns), "{l:?}");
        assert_eq!(l.max_ns, 1_000_000);
    }
}
