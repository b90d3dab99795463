//! An atomic token bucket on one 64-bit word: GCRA, the generic cell rate
//! algorithm (ITU-T I.371; the form used by redis-cell and the `governor`
//! crate). The word holds the theoretical arrival time (TAT) in nanoseconds
//! since the bucket's epoch; a request of `n` tokens is admitted when moving
//! the TAT forward by `n` emission intervals keeps it within the burst
//! tolerance of now. No lock, one CAS per admitted request, no background
//! refill.
//!
//! Times are passed in (`now_ns`) so that loom can model the algorithm with
//! fixed times; [`TokenBucket::try_acquire`] reads the clock.

use crate::sync::atomic::{AtomicU64, Ordering};

/// A rate limiter: `rate` tokens per second, bursts of up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    /// Theoretical arrival time, ns since `epoch`. Written by admitted
    /// callers (CAS), read by all.
    tat: AtomicU64,
    /// Nanoseconds per token.
    interval_ns: u64,
    /// How far the TAT may run ahead of now: `burst * interval_ns`.
    tolerance_ns: u64,
    #[cfg(not(loom))]
    epoch: std::time::Instant,
}

impl TokenBucket {
    /// A bucket admitting `rate` tokens per second with bursts of `burst`
    /// (both at least 1; `rate` up to 1e9).
    pub fn new(rate: f64, burst: u64) -> TokenBucket {
        let interval_ns = (1e9 / rate.clamp(1e-9, 1e9)).round().max(1.0) as u64;
        TokenBucket {
            tat: AtomicU64::new(0),
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst.max(1)),
            #[cfg(not(loom))]
            epoch: std::time::Instant::now(),
        }
    }

    /// Takes `n` tokens now if the bucket has them.
    #[cfg(not(loom))]
    #[inline]
    pub fn try_acquire(&self, n: u64) -> bool {
        // Offset by the tolerance so that a fresh bucket starts full.
        let now = self.epoch.elapsed().as_nanos() as u64 + self.tolerance_ns;
        self.try_acquire_at(n, now)
    }

    /// Takes `n` tokens at time `now_ns` (ns since the epoch, plus the
    /// tolerance) if the bucket has them.
    #[inline]
    pub fn try_acquire_at(&self, n: u64, now_ns: u64) -> bool {
        let cost = n.saturating_mul(self.interval_ns);
        // Relaxed: the TAT is the only state; the CAS orders the updates
        // among themselves and nothing else is published through it.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now_ns).saturating_add(cost);
            if new_tat - now_ns > self.tolerance_ns {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// Takes `n` tokens whether or not the bucket has them, and returns how
    /// long to wait (ns from `now_ns`) before using them: the pacing form
    /// for egress, where a request is delayed, never dropped. Callers that
    /// race are queued one behind the other by the TAT.
    #[inline]
    pub fn reserve_at(&self, n: u64, now_ns: u64) -> u64 {
        let cost = n.saturating_mul(self.interval_ns);
        // Relaxed: as in `try_acquire_at`.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now_ns).saturating_add(cost);
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (new_tat - now_ns).saturating_sub(self.tolerance_ns),
                Err(current) => tat = current,
            }
        }
    }

    /// [`TokenBucket::reserve_at`] now, as a duration.
    #[cfg(not(loom))]
    pub fn reserve(&self, n: u64) -> std::time::Duration {
        let now = self.epoch.elapsed().as_nanos() as u64 + self.tolerance_ns;
        std::time::Duration::from_nanos(self.reserve_at(n, now))
    }

    /// Nanoseconds per token.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The burst tolerance in nanoseconds (`burst * interval`).
    pub fn tolerance_ns(&self) -> u64 {
        self.tolerance_ns
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn admits_the_burst_then_the_rate() {
        let b = TokenBucket::new(1000.0, 5); // 1 ms per token
        let t0 = b.tolerance_ns();
        for _ in 0..5 {
            assert!(b.try_acquire_at(1, t0));
        }
        assert!(!b.try_acquire_at(1, t0), "burst used up");
        assert!(!b.try_acquire_at(1, t0 + 999_999));
        assert!(b.try_acquire_at(1, t0 + 1_000_000), "one token per ms");
        assert!(!b.try_acquire_at(1, t0 + 1_000_000));
        // After a long pause the bucket is full again, not fuller.
        let later = t0 + 10_000_000_000;
        for _ in 0..5 {
            assert!(b.try_acquire_at(1, later));
        }
        assert!(!b.try_acquire_at(1, later));
        // A request larger than the burst never fits.
        assert!(!b.try_acquire_at(6, later + 1_000_000_000));
    }

    #[test]
    fn reserve_queues_callers_behind_each_other() {
        let b = TokenBucket::new(1000.0, 2); // 1 ms per token, burst 2
        let t0 = b.tolerance_ns();
        assert_eq!(b.reserve_at(2, t0), 0, "the burst is free");
        assert_eq!(b.reserve_at(1, t0), 1_000_000);
        assert_eq!(b.reserve_at(3, t0), 4_000_000);
        // Time passing pays the debt back.
        assert_eq!(b.reserve_at(1, t0 + 10_000_000), 0);
    }

    #[test]
    fn threads_hammering_it_admit_no_more_than_rate_times_time_plus_burst() {
        let rate = 20_000.0;
        let burst = 100;
        let b = std::sync::Arc::new(TokenBucket::new(rate, burst));
        let run = std::time::Duration::from_millis(300);
        let start = std::time::Instant::now();
        let admitted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || {
                        let mut n = 0u64;
                        while start.elapsed() < run {
                            n += b.try_acquire(1) as u64;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let elapsed = start.elapsed().as_secs_f64();
        let bound = rate * elapsed + burst as f64;
        assert!(
            admitted as f64 <= bound + 1.0,
            "admitted {admitted} > {bound}"
        );
        // And it does admit traffic (half the rate is a loose floor).
        assert!(
            admitted as f64 >= rate * run.as_secs_f64() / 2.0,
            "admitted only {admitted}"
        );
    }
}
