//! Wall-clock time as OTLP carries it: nanoseconds since the Unix epoch.
//!
//! The lowest layer with `sync` and `error`: the engine stamps cumulative
//! sums and self-metrics with it, the instruments their data points, the
//! benchmark workload its spans.

/// The current time in nanoseconds since the Unix epoch (0 if the clock is
/// set before 1970).
pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// About a century: what a deadline too far to represent becomes.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, saturating: a wait too long to represent (`Duration::MAX`,
/// `UINT64_MAX` milliseconds from C) lasts a century instead of wrapping
/// into the past or panicking.
pub fn saturating_add(at: std::time::Instant, d: std::time::Duration) -> std::time::Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(FOREVER))
        .unwrap_or(at)
}

/// The deadline `d` from now (see [`saturating_add`]).
pub fn deadline_after(d: std::time::Duration) -> std::time::Instant {
    saturating_add(std::time::Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn deadlines_saturate_instead_of_wrapping() {
        let now = Instant::now();
        assert!(deadline_after(Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        assert!(deadline_after(Duration::from_millis(u64::MAX)) > now);
        assert!(saturating_add(now, Duration::from_secs(1)) == now + Duration::from_secs(1));
    }
}
