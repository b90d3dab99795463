//! Per-endpoint counts, for a signal routed across several endpoints (a
//! collector fleet): what each endpoint took, and whether its circuit
//! breaker is open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::record::Signal;

/// One worker's counts for one endpoint (a lane).
#[derive(Default)]
pub(crate) struct EndpointCounters {
    pub exported: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub failed: AtomicU64,
    pub breaker_open: AtomicBool,
}

/// What one endpoint of a signal took, summed over the workers
/// (`Pipeline::endpoint_stats`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStats {
    /// The signal the endpoint receives.
    #[serde(serialize_with = "signal_name")]
    pub signal: Signal,
    /// Its `host:port`.
    pub endpoint: String,
    /// Records it acknowledged.
    pub exported: u64,
    /// Requests sent to it, retries included.
    pub requests: u64,
    /// Attempts that failed.
    pub request_errors: u64,
    /// Records failed for good on their way to it.
    pub failed: u64,
    /// Whether some worker's circuit breaker for it is open or probing.
    pub breaker_open: bool,
}

fn signal_name<S: serde::Serializer>(s: &Signal, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.name())
}

impl EndpointStats {
    pub(crate) fn new(signal: Signal, endpoint: String) -> EndpointStats {
        EndpointStats {
            signal,
            endpoint,
            exported: 0,
            requests: 0,
            request_errors: 0,
            failed: 0,
            breaker_open: false,
        }
    }

    pub(crate) fn add(&mut self, c: &EndpointCounters) {
        self.exported += c.exported.load(Relaxed);
        self.requests += c.requests.load(Relaxed);
        self.request_errors += c.request_errors.load(Relaxed);
        self.failed += c.failed.load(Relaxed);
        self.breaker_open |= c.breaker_open.load(Relaxed);
    }
}
