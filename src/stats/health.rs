//! The export path's health, from the workers' recent attempts.

use std::sync::atomic::Ordering::Relaxed;

use super::counters::WorkerCounters;

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
        } else if f > 0
            || open != 0
            || w.breakers_open.load(Relaxed) > 0
            || w.latency_ewma_ns.load(Relaxed) > slow_ns
        {
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
