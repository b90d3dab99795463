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
