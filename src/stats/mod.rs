//! Self-monitoring: counters and latency histograms, written by producers and
//! workers without locks and read at any time by [`crate::Pipeline::stats`].
//!
//! Producers count into their shard's counters, each worker into its own
//! cache-padded block (`counters`); a snapshot sums them. Nothing is reset
//! on read: rates come from the difference of two snapshots. Losses are
//! counted by the reasons of one table (`reasons`).

mod counters;
mod endpoints;
mod health;
mod histogram;
mod rates;
mod reasons;

use std::sync::atomic::Ordering::Relaxed;

use crate::record::{PerSignal, Signal};

pub(crate) use counters::{ShardCounters, ThreadCounters, WorkerCounters};
pub(crate) use endpoints::EndpointCounters;
pub use endpoints::EndpointStats;
pub(crate) use health::health;
pub use health::Health;

pub use histogram::Latency;

pub(crate) use rates::RateWindow;
pub use rates::Rates;
pub use reasons::{DropReason, Dropped, FailReason, Failed};

/// A snapshot of a pipeline's counters. The accounting identity (checked by
/// [`Stats::check_identity`]): `offered = accepted + dropped.total()` and
/// `accepted = exported + failed.total() + rejected + in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Records the host tried to record.
    pub offered: u64,
    /// Records taken into a ring.
    pub accepted: u64,
    /// Of `offered`, by signal.
    pub offered_by_signal: PerSignal<u64>,
    /// Of `accepted`, by signal.
    pub accepted_by_signal: PerSignal<u64>,
    /// Of `exported`, by signal.
    pub exported_by_signal: PerSignal<u64>,
    /// Records refused at ingest, by reason.
    pub dropped: Dropped,
    /// Records acknowledged by the receiver.
    pub exported: u64,
    /// Records whose export failed for good, by reason (`failed.total()`
    /// for all of them).
    pub failed: Failed,
    /// Records the server rejected (partial success).
    pub rejected: u64,
    /// Records written to the disk spool after they were drained (the
    /// spool replays them, in this process or a later one).
    pub spooled: u64,
    /// The disk spool, when configured.
    pub spool: SpoolStats,
    /// Records accepted and not yet exported, failed or rejected: those
    /// still in the rings (`accepted - drained`) and those the workers hold.
    pub in_flight: u64,
    /// Records the workers took out of the rings.
    pub drained: u64,
    /// Records the workers hold: in a batch, a request in flight, or one
    /// waiting for its retry.
    pub held: u64,
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
    /// Measurements dropped: a histogram's NaN or infinity (it falls in no
    /// bucket and would make the sum NaN or infinite for good), a
    /// counter's add past `i64::MAX` (no data point carries it).
    pub dropped_measurements: u64,
    /// `scope()` calls answered with the shared `otlpflow.overflow` scope
    /// because `max_scopes` scopes were registered.
    pub scopes_overflowed: u64,
    /// Export round-trip latency.
    pub export_latency: Latency,
    /// Milliseconds since the pipeline started.
    pub uptime_ms: u64,
    /// Per-second rates since the pipeline started.
    pub rates_since_start: Rates,
    /// Per-second rates over the last interval: since the newest earlier
    /// `stats()` snapshot at least 1 s old (1-2 s when stats are read every
    /// second or more often; since start at the first read).
    pub rates_last: Rates,
    /// End to end: from a record's commit into its ring to the receiver's
    /// acknowledgement of its request (1 record in 64 per shard sampled;
    /// a sample is attributed to the batch being filled when the worker
    /// first sees it, so it can read short by at most one batch's wait).
    pub e2e_latency: Latency,
}

impl Stats {
    /// Checks the accounting identity: every record offered was refused
    /// (by reason) or accepted; every record a worker took out of a ring
    /// was exported, rejected, failed (by reason) or is still held; nothing
    /// was taken out that was not put in. Each term is counted where it
    /// happens, so a path that miscounts shows here. Exact when nothing is
    /// moving (after `flush` or `shutdown`); a snapshot taken under load
    /// reads counters one by one and may be off by the records in motion.
    pub fn check_identity(&self) -> Result<(), String> {
        let dropped = self.dropped.total();
        if self.offered != self.accepted + dropped {
            return Err(format!(
                "offered {} != accepted {} + dropped {dropped}",
                self.offered, self.accepted
            ));
        }
        // Wide arithmetic: a miscount may have wrapped `held` below zero.
        let done = self.exported as u128
            + self.rejected as u128
            + self.failed.total() as u128
            + self.spooled as u128;
        if self.drained as u128 != done + self.held as u128 {
            return Err(format!(
                "drained {} != exported {} + rejected {} + failed {} + spooled {} + held {}",
                self.drained,
                self.exported,
                self.rejected,
                self.failed.total(),
                self.spooled,
                self.held
            ));
        }
        if self.drained > self.accepted {
            return Err(format!(
                "drained {} > accepted {}",
                self.drained, self.accepted
            ));
        }
        for s in Signal::ALL {
            if self.exported_by_signal[s] > self.accepted_by_signal[s] {
                return Err(format!(
                    "{} exported {} > accepted {}",
                    s.name(),
                    self.exported_by_signal[s],
                    self.accepted_by_signal[s]
                ));
            }
        }
        Ok(())
    }
}

/// What the disk spool did (zero without one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    /// Bytes in the spool's segments now.
    pub bytes: u64,
    /// Records replayed from the spool and acknowledged (those of an
    /// earlier process too).
    pub replayed: u64,
    /// Spooled requests found corrupt (bad checksum, torn) and skipped.
    pub corrupt: u64,
    /// Records dropped with the oldest segment when the spool was full.
    pub dropped_full: u64,
    /// Records replayed and refused for good by the receiver.
    pub failed: u64,
    /// Spool writes and reads that failed (the request stayed in memory).
    pub errors: u64,
}

/// Sums the shards', the producer threads' and the workers' counters.
/// Worker counts are read before producer counts: a record is accepted
/// before it is committed, hence before it is drained, so a snapshot under
/// load never sees more drained than accepted.
pub(crate) fn snapshot<'a, 't, 'w>(
    shards: impl Iterator<Item = (&'a ShardCounters, usize, usize)>,
    threads: impl Iterator<Item = &'t ThreadCounters>,
    workers: impl Iterator<Item = &'w WorkerCounters>,
) -> Stats {
    let mut s = Stats::default();
    let mut export = histogram::Sum::default();
    let mut e2e = histogram::Sum::default();
    let mut n_workers = 0;
    for w in workers {
        n_workers += 1;
        s.batch_target += w.batch_target.load(Relaxed);
        s.drained += w.drained.load(Relaxed);
        for sig in Signal::ALL {
            s.exported_by_signal[sig] += w.exported[sig].load(Relaxed);
        }
        for r in FailReason::ALL {
            s.failed.add(*r, w.failed[r.index()].load(Relaxed));
        }
        s.rejected += w.rejected.load(Relaxed);
        s.spooled += w.spooled.load(Relaxed);
        s.held += w.held.load(Relaxed);
        s.concurrency_limit += w.concurrency_limit.load(Relaxed);
        s.breaker_opened += w.breaker_opened.load(Relaxed);
        s.requests += w.requests.load(Relaxed);
        s.retries += w.retries.load(Relaxed);
        s.request_errors += w.request_errors.load(Relaxed);
        s.in_flight_requests += w.in_flight_requests.load(Relaxed);
        s.bytes_raw += w.bytes_raw.load(Relaxed);
        s.bytes_wire += w.bytes_wire.load(Relaxed);
        w.export_latency.add_into(&mut export);
        w.e2e_latency.add_into(&mut e2e);
    }
    for (c, used, capacity) in shards {
        s.ring_fill_max_pct = s
            .ring_fill_max_pct
            .max((used * 100 / capacity.max(1)) as u64);
        for sig in Signal::ALL {
            s.offered_by_signal[sig] += c.signals[sig].offered.load(Relaxed);
            s.accepted_by_signal[sig] += c.signals[sig].accepted.load(Relaxed);
        }
        for r in DropReason::ALL {
            s.dropped.add(*r, c.drops[r.index()].load(Relaxed));
        }
        s.ring_bytes_used += used as u64;
    }
    for t in threads {
        for sig in Signal::ALL {
            s.offered_by_signal[sig] += t.signals[sig].offered.load(Relaxed);
            s.accepted_by_signal[sig] += t.signals[sig].accepted.load(Relaxed);
        }
    }
    s.offered = s.offered_by_signal.values().sum();
    s.accepted = s.accepted_by_signal.values().sum();
    s.exported = s.exported_by_signal.values().sum();
    // A snapshot under load can read a count before the one it follows;
    // the displayed gauge is clamped, `check_identity` sees the raw terms.
    s.in_flight = s.accepted.saturating_sub(s.drained).saturating_add(s.held);
    s.export_latency = Latency::from_sum(&export);
    s.e2e_latency = Latency::from_sum(&e2e);
    s.batch_target /= n_workers.max(1);
    s
}

/// Writes a replaced engine's counts into a fresh engine's first shard and
/// worker (a fork child continuing its parent's stats). What the parent
/// had in flight is the parent's to send: the child counts it as failed
/// (`FailReason::Fork`), so its own identity holds.
pub(crate) fn carry(c: &Stats, shard: &ShardCounters, worker: &WorkerCounters) {
    for sig in Signal::ALL {
        shard.signals[sig]
            .offered
            .store(c.offered_by_signal[sig], Relaxed);
        shard.signals[sig]
            .accepted
            .store(c.accepted_by_signal[sig], Relaxed);
        worker.exported[sig].store(c.exported_by_signal[sig], Relaxed);
    }
    for (r, n) in c.dropped.iter() {
        shard.drops[r.index()].store(n, Relaxed);
    }
    for (r, n) in c.failed.iter() {
        let n = if r == FailReason::Fork {
            n + c.in_flight
        } else {
            n
        };
        worker.failed[r.index()].store(n, Relaxed);
    }
    // Everything the parent accepted is out of the child's rings: drained,
    // and (with the in-flight ones now failed) no longer held.
    worker.drained.store(c.accepted, Relaxed);
    worker.held.store(0, Relaxed);
    worker.rejected.store(c.rejected, Relaxed);
    worker.spooled.store(c.spooled, Relaxed);
    worker.requests.store(c.requests, Relaxed);
    worker.retries.store(c.retries, Relaxed);
    worker.request_errors.store(c.request_errors, Relaxed);
    worker.bytes_raw.store(c.bytes_raw, Relaxed);
    worker.bytes_wire.store(c.bytes_wire, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RecordError;

    fn snap(shard: &ShardCounters, worker: &WorkerCounters) -> Stats {
        snapshot(
            [(shard, 0, 64)].into_iter(),
            std::iter::empty(),
            [worker].into_iter(),
        )
    }

    /// Three records through every step, then one deliberately miscounted
    /// in each of the ways a path could get it wrong.
    #[test]
    fn the_identity_check_catches_a_miscounted_record() {
        let (shard, worker) = (ShardCounters::default(), WorkerCounters::default());
        for _ in 0..3 {
            shard.offer(Signal::Logs);
            shard.accept(Signal::Logs);
        }
        shard.offer(Signal::Traces);
        shard.refuse(RecordError::Full);
        worker.drain(3);
        worker.export(Signal::Logs, 1);
        worker.reject(1);
        let s = snap(&shard, &worker);
        assert_eq!((s.in_flight, s.held), (1, 1));
        assert_eq!(s.check_identity(), Ok(()));
        worker.fail(FailReason::Exhausted, 1);
        let s = snap(&shard, &worker);
        assert_eq!((s.in_flight, s.failed.total()), (0, 1));
        assert_eq!(s.check_identity(), Ok(()));

        // An export counted twice (the request's records were acknowledged
        // once): held goes below zero and the check fails.
        worker.export(Signal::Logs, 1);
        assert!(snap(&shard, &worker).check_identity().is_err());
        worker.held.fetch_add(1, Relaxed);
        worker.exported[Signal::Logs].fetch_sub(1, Relaxed);
        assert_eq!(snap(&shard, &worker).check_identity(), Ok(()));

        // A refusal not counted under any reason.
        shard.offer(Signal::Metrics);
        let e = snap(&shard, &worker).check_identity().unwrap_err();
        assert!(e.starts_with("offered"), "{e}");
        shard.refuse(RecordError::Invalid);

        // A record lost by a worker without a failure counted.
        shard.offer(Signal::Traces);
        shard.accept(Signal::Traces);
        worker.drain(1);
        worker.held.fetch_sub(1, Relaxed);
        let e = snap(&shard, &worker).check_identity().unwrap_err();
        assert!(e.starts_with("drained"), "{e}");
    }

    #[test]
    fn carry_keeps_the_identity_and_fails_what_was_in_flight() {
        let (shard, worker) = (ShardCounters::default(), WorkerCounters::default());
        for _ in 0..5 {
            shard.offer(Signal::Traces);
            shard.accept(Signal::Traces);
        }
        worker.drain(4);
        worker.export(Signal::Traces, 2);
        let parent = snap(&shard, &worker);
        assert_eq!(parent.in_flight, 3);
        let (s2, w2) = (ShardCounters::default(), WorkerCounters::default());
        carry(&parent, &s2, &w2);
        let child = snap(&s2, &w2);
        assert_eq!(child.check_identity(), Ok(()));
        assert_eq!((child.in_flight, child.failed[FailReason::Fork]), (0, 3));
    }
}
