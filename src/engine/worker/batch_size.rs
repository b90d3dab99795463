//! The batch target: how many records a worker's batch takes before it
//! leaves. Fixed at `max_batch_items`, moved by the latency target of
//! `adaptive_batch`, or, by default, grown while the path's round trip is
//! long and batches leave full, so that a distant collector gets requests
//! large enough to fill the path.

use std::sync::atomic::Ordering;

use super::export_task::ExportContext;
use crate::flow::concurrency::LONG_ROUND_TRIP_NS;

/// Moves the batch target after an acknowledged request: by the latency
/// target of `PipelineBuilder::adaptive_batch`, or, where batches grow by
/// themselves (the default), up by a quarter while the path's round trip
/// is long and most batches leave full (the link, not the producers, is what
/// limits), and back down toward `max_batch_items` otherwise. At most once
/// every 4 acknowledged requests. Runs on the worker's thread.
pub(super) fn adapt_batch(shared: &ExportContext, latency_ns: u64, memory_pressure: bool) {
    let cfg = &shared.inner.config;
    let counters = shared.counters();
    // The smoothed round trip is kept either way: health() reads it too.
    let old = counters.latency_ewma_ns.load(Ordering::Relaxed);
    let ewma = if old == 0 {
        latency_ns
    } else {
        // Weight 1/8, in integers: smooth enough not to chase one slow reply.
        (old * 7 + latency_ns) / 8
    };
    counters.latency_ewma_ns.store(ewma, Ordering::Relaxed);
    if cfg.adaptive_batch.is_none() && cfg.batch_growth.is_none() {
        return;
    }
    if counters.since_adjust.fetch_add(1, Ordering::Relaxed) + 1 < 4 {
        return;
    }
    let current = counters.batch_target.load(Ordering::Relaxed);
    let (sent, full) = shared.batches.get();
    let next = match (cfg.adaptive_batch, cfg.batch_growth) {
        (Some((min, target)), _) => {
            let target_ns = target.as_nanos() as u64;
            if ewma > 2 * target_ns {
                current * 3 / 4
            } else if ewma < target_ns / 2 {
                (current * 5).div_ceil(4)
            } else {
                current
            }
            .clamp(min as u64, cfg.max_batch_items as u64)
        }
        (None, Some(cap)) => {
            let base = cfg.max_batch_items as u64;
            // The path's own round trip, not one a queue (at the receiver,
            // or on these cores) made long: the adaptive concurrency's
            // reference where there is one.
            let path = shared
                .aimd
                .borrow()
                .as_ref()
                .map_or(ewma, |a| a.reference_ns());
            if path < LONG_ROUND_TRIP_NS || (sent > 0 && full * 2 < sent) {
                (current * 3 / 4).max(base)
            } else if sent > 0 {
                (current * 5).div_ceil(4).min(cap as u64)
            } else {
                // No batch left since the last move: nothing learnt.
                current
            }
        }
        (None, None) => current,
    };
    // Under system memory pressure batches may shrink, never grow.
    let next = if memory_pressure {
        next.min(current)
    } else {
        next
    };
    if next != current {
        counters.batch_target.store(next, Ordering::Relaxed);
    }
    if sent > 0 {
        shared.batches.set((0, 0));
    }
    counters.since_adjust.store(0, Ordering::Relaxed);
}
