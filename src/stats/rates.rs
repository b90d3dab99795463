//! Rates: records, bytes, requests and losses per second, since the
//! pipeline started and over the last interval, from the difference of two
//! snapshots (nothing on the record path).

use std::time::{Duration, Instant};

use super::{DropReason, Dropped, FailReason, Failed, Stats};

/// Shortest window of the last-interval rates.
const MIN_WINDOW: Duration = Duration::from_secs(1);

/// Per-second rates over a window (integers, rounded down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rates {
    /// The window the rates are over, in milliseconds.
    pub window_ms: u64,
    /// Records offered per second.
    pub offered: u64,
    /// Records acknowledged by the receiver per second.
    pub exported: u64,
    /// Uncompressed OTLP bytes exported per second.
    pub bytes_raw: u64,
    /// Bytes sent on the wire per second.
    pub bytes_wire: u64,
    /// Export requests per second (retries included).
    pub requests: u64,
    /// Failed attempts per second.
    pub request_errors: u64,
    /// Records refused at ingest per second, by reason.
    pub dropped: Dropped,
    /// Records failed after acceptance per second, by reason.
    pub failed: Failed,
}

impl Rates {
    /// The rates from snapshot `a` to the later snapshot `b`, `window`
    /// apart.
    pub(crate) fn between(a: &Stats, b: &Stats, window: Duration) -> Rates {
        let ms = window.as_millis().max(1) as u64;
        // Counters only grow; a snapshot under load may read one a little
        // behind, hence the saturating difference.
        let per_sec = |x: u64, y: u64| (y.saturating_sub(x) as u128 * 1000 / ms as u128) as u64;
        let mut dropped = Dropped::default();
        for r in DropReason::ALL {
            dropped.add(*r, per_sec(a.dropped[*r], b.dropped[*r]));
        }
        let mut failed = Failed::default();
        for r in FailReason::ALL {
            failed.add(*r, per_sec(a.failed[*r], b.failed[*r]));
        }
        Rates {
            window_ms: ms,
            offered: per_sec(a.offered, b.offered),
            exported: per_sec(a.exported, b.exported),
            bytes_raw: per_sec(a.bytes_raw, b.bytes_raw),
            bytes_wire: per_sec(a.bytes_wire, b.bytes_wire),
            requests: per_sec(a.requests, b.requests),
            request_errors: per_sec(a.request_errors, b.request_errors),
            dropped,
            failed,
        }
    }
}

/// The snapshots the last-interval rates are taken against: the newest one
/// at least `MIN_WINDOW` old is kept, so the window is 1-2 s when stats are
/// read often, and the time since the read before the last otherwise.
pub(crate) struct RateWindow {
    start: Instant,
    older: Option<(Instant, Stats)>,
    newer: Option<(Instant, Stats)>,
}

impl RateWindow {
    pub(crate) fn new(start: Instant) -> RateWindow {
        RateWindow {
            start,
            older: None,
            newer: None,
        }
    }

    /// Fills `s`'s uptime and rates for a snapshot taken at `now`.
    pub(crate) fn fill(&mut self, now: Instant, s: &mut Stats) {
        let up = now.saturating_duration_since(self.start);
        s.uptime_ms = up.as_millis() as u64;
        s.rates_since_start = Rates::between(&Stats::default(), s, up);
        match self.newer {
            Some((t, _)) if now.saturating_duration_since(t) < MIN_WINDOW => {}
            _ => self.older = self.newer.replace((now, *s)),
        }
        s.rates_last = match &self.older {
            Some((t, before)) => Rates::between(before, s, now.saturating_duration_since(*t)),
            None => s.rates_since_start,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_per_second_over_each_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(t0);
        let mut s = Stats {
            exported: 1000,
            bytes_wire: 50_000,
            ..Stats::default()
        };
        s.dropped.add(DropReason::Full, 10);
        w.fill(t0 + Duration::from_secs(2), &mut s);
        assert_eq!(s.uptime_ms, 2000);
        assert_eq!(
            (s.rates_since_start.exported, s.rates_since_start.bytes_wire),
            (500, 25_000)
        );
        assert_eq!(s.rates_since_start.dropped[DropReason::Full], 5);
        // No earlier snapshot: the last interval is since start.
        assert_eq!(s.rates_last, s.rates_since_start);

        let mut s2 = Stats {
            exported: 4000,
            ..s
        };
        w.fill(t0 + Duration::from_secs(4), &mut s2);
        assert_eq!(
            (s2.rates_last.exported, s2.rates_last.window_ms),
            (1500, 2000)
        );
        assert_eq!(s2.rates_since_start.exported, 1000);
        // Read again 0.5 s later: still against the snapshot of t0 + 2 s.
        let mut s3 = Stats {
            exported: 4500,
            ..s2
        };
        w.fill(t0 + Duration::from_millis(4500), &mut s3);
        assert_eq!(
            (s3.rates_last.exported, s3.rates_last.window_ms),
            (1400, 2500)
        );
    }
}
