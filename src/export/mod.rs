//! Export: compression, the OTLP/gRPC client, and retry with backoff.

pub(crate) mod compress;
pub(crate) mod grpc;

use std::time::Duration;

use crate::config::RetryConfig;

/// Exponential backoff with full jitter (AWS architecture blog, "Exponential
/// Backoff And Jitter"): each delay is uniform in `[d/2, d]` where `d`
/// doubles from `initial_backoff` up to `max_backoff`.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(cfg: &RetryConfig, seed: u64) -> Backoff {
        Backoff {
            next: cfg.initial_backoff,
            max: cfg.max_backoff,
            rng: seed | 1,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        half + Duration::from_nanos(self.rng % (half.as_nanos() as u64 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_in_bounds() {
        let cfg = RetryConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            max_elapsed: Duration::from_secs(1),
        };
        let mut b = Backoff::new(&cfg, 42);
        let expect = [10, 20, 40, 80, 80, 80];
        for ms in expect {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(ms) / 2 && d <= Duration::from_millis(ms),
                "{d:?} vs {ms}"
            );
        }
    }
}
