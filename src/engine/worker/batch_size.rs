//! The batch target: how many records a worker's batch takes before it
//! leaves. Fixed at `max_batch_items`, moved by the latency target of
//! `adaptive_batch`, or, by default, grown while batches leave full: on a
//! long path so that a distant collector gets requests large enough to
//! fill the path, on a short one only to the request size that costs least
//! per record.

use std::sync::atomic::Ordering;

use super::export_task::{ExportContext, SentBatches};
use crate::flow::concurrency::LONG_ROUND_TRIP_NS;

/// The uncompressed request size that batches grow to on a short path
/// while they leave full. Fewer, larger requests cost less per record
/// (HTTP/2 framing, system calls, the receiver's work per request) up to
/// about this size: gen with zstd to a null receiver on this 2-vCPU
/// machine, 16 rounds against 512 records (151 KB requests of the
/// benchmark span), took 0.94x the CPU per span at 640 records, 0.91x at
/// 768 (227 KB), 1.00x at 896 (264 KB); past 256 KiB zstd's level 1 also
/// switches to its parameters for large inputs (BENCHMARKS.md).
const SHORT_PATH_REQUEST_BYTES: u64 = 224 * 1024;

/// And the most a grown request may take on the wire: HTTP/2's default
/// stream window, which a request fits without waiting for the receiver's
/// window update. So requests that are not compressed do not grow on a
/// short path (512 benchmark spans take 151 KB): uncompressed, larger requests cost
/// more (gen to `otlpflow sink`, 20 rounds: 0.235 CPU s per million spans
/// grown to 777 against 0.209 at 512, and 12% less rate).
const SHORT_PATH_WIRE_BYTES: u64 = 65_535;

/// Moves the batch target after an acknowledged request: by the latency
/// target of `PipelineBuilder::adaptive_batch`, or, where batches grow by
/// themselves (the default), up while the path's round trip is long and
/// most batches leave full (the link, not the producers, is what limits),
/// and back down toward `max_batch_items` otherwise (`grown_target`). At
/// most once every 4 acknowledged requests. Runs on the worker's thread.
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
    let tally = shared.batches.get();
    let (sent, full) = (tally.sent, tally.full);
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
            let (next, slow_start) = grown_target(
                Growth {
                    current,
                    base,
                    cap: cap as u64,
                    short_cap: short_path_cap(base, cap as u64, &tally),
                    slow_start: shared.batch_slow_start.get(),
                },
                path,
                sent,
                full,
            );
            shared.batch_slow_start.set(slow_start);
            next
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
        shared.batches.set(SentBatches::default());
    }
    counters.since_adjust.store(0, Ordering::Relaxed);
}

/// Where automatic batch growth stands.
#[derive(Debug, Clone, Copy)]
struct Growth {
    current: u64,
    /// `max_batch_items`: the floor.
    base: u64,
    /// The ceiling.
    cap: u64,
    /// The ceiling on a short path (see `short_path_cap`).
    short_cap: u64,
    /// Quadrupling rather than adding a quarter.
    slow_start: bool,
}

/// How many records make a request of `SHORT_PATH_REQUEST_BYTES` before
/// compression and at most `SHORT_PATH_WIRE_BYTES` after, at the sizes of
/// the records just sent, between the floor and the cap.
fn short_path_cap(base: u64, cap: u64, sent: &SentBatches) -> u64 {
    if sent.records == 0 {
        return base;
    }
    let per_record = |bytes: u64| (bytes / sent.records).max(1);
    let records = (SHORT_PATH_REQUEST_BYTES / per_record(sent.raw))
        .min(SHORT_PATH_WIRE_BYTES / per_record(sent.wire));
    records.clamp(base, cap.max(base))
}

/// The next batch target of automatic growth, and whether growth is still
/// in its slow start, given the path's round trip without a queue and the
/// batches sent since the last move (`full` of them full).
///
/// Down by a quarter (not below the floor) when most batches left before
/// they were full; up while they leave full, to the cap on a long path and
/// to the short path's cap on a short one (down by a quarter toward it when
/// above: the path got shorter). Acknowledgements come in bursts a round
/// trip apart and a burst moves the target once (the batches of one burst
/// leave after it), so growth is per round trip: by a quarter it took 12
/// round trips (2.5 s at 200 ms) to reach 16x; quadrupling until the first
/// shrink (a slow start, as the adaptive concurrency has) takes 2, then a
/// quarter at a time. Back at the floor, the next growth is a slow start
/// again.
fn grown_target(g: Growth, path_ns: u64, sent: u64, full: u64) -> (u64, bool) {
    if sent == 0 {
        // No batch left since the last move: nothing learnt.
        return (g.current, g.slow_start);
    }
    let ceiling = if path_ns < LONG_ROUND_TRIP_NS {
        g.short_cap
    } else {
        g.cap
    };
    let part_full = full * 2 < sent;
    if part_full || g.current > ceiling {
        let floor = if part_full { g.base } else { ceiling };
        let next = (g.current * 3 / 4).max(floor);
        (next, next == g.base)
    } else {
        let next = if g.slow_start {
            g.current * 4
        } else {
            (g.current * 5).div_ceil(4)
        };
        (next.min(ceiling), g.slow_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: u64 = 200_000_000;

    fn at(current: u64, slow_start: bool) -> Growth {
        Growth {
            current,
            base: 512,
            cap: 8192,
            short_cap: 768,
            slow_start,
        }
    }

    #[test]
    fn a_long_busy_path_reaches_the_cap_in_two_moves() {
        let (a, s) = grown_target(at(512, true), LONG, 4, 4);
        assert_eq!((a, s), (2048, true));
        let (b, s) = grown_target(at(a, s), LONG, 8, 8);
        assert_eq!((b, s), (8192, true));
        assert_eq!(grown_target(at(b, s), LONG, 8, 8), (8192, true));
    }

    #[test]
    fn the_first_shrink_ends_the_slow_start() {
        // Most batches left part-full: the producers, not the link, limit.
        let (a, s) = grown_target(at(4096, true), LONG, 8, 3);
        assert_eq!((a, s), (3072, false));
        // Growth is by a quarter from then on.
        assert_eq!(grown_target(at(a, s), LONG, 8, 8), (3840, false));
        // Back at the floor, it starts slow again.
        assert_eq!(grown_target(at(600, false), LONG, 8, 0), (512, true));
    }

    #[test]
    fn a_short_busy_path_grows_only_to_its_own_cap() {
        const SHORT: u64 = 1_000_000;
        // Batches leave full: up to the short path's cap, not the cap.
        assert_eq!(grown_target(at(512, true), SHORT, 8, 8), (768, true));
        assert_eq!(grown_target(at(768, true), SHORT, 8, 8), (768, true));
        // Grown on a long path that got short: down toward the short cap.
        assert_eq!(grown_target(at(2048, false), SHORT, 8, 8), (1536, false));
        assert_eq!(grown_target(at(900, false), SHORT, 8, 8), (768, false));
        // Batches leave part-full: down toward the floor.
        assert_eq!(grown_target(at(768, true), SHORT, 8, 3), (576, false));
        assert_eq!(grown_target(at(600, false), SHORT, 8, 3), (512, true));
        // Nothing sent: nothing learnt.
        assert_eq!(grown_target(at(2048, false), LONG, 0, 0), (2048, false));
        assert_eq!(grown_target(at(512, true), SHORT, 0, 0), (512, true));
    }

    #[test]
    fn the_short_path_cap_is_a_request_size_in_records() {
        // (records sent, bytes per record before and after compression,
        // the cap, why)
        let cases = [
            (512, 295, 24, 777, "the benchmark span with zstd: 224 KiB"),
            (512, 295, 295, 512, "uncompressed: past the wire's limit"),
            (512, 60, 20, 3276, "compressed 3x: the wire limits"),
            (100, 4096, 400, 512, "records so large 512 pass the size"),
            (512, 20, 2, 8192, "records so small the cap limits"),
            (0, 0, 0, 512, "nothing sent yet"),
        ];
        for (records, raw, wire, cap, why) in cases {
            let sent = SentBatches {
                sent: 1,
                full: 1,
                records,
                raw: records * raw,
                wire: records * wire,
            };
            assert_eq!(short_path_cap(512, 8192, &sent), cap, "{why}");
        }
    }
}
