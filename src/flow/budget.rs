//! A global memory budget in bytes, on one atomic word: every record in a
//! ring, in a batch being built, or in a request in flight or waiting for a
//! retry holds a reservation until it leaves the pipeline. `try_reserve`
//! never lets the total pass the limit (a CAS loop, not add-then-undo, so
//! that a racing caller never sees a transient overshoot and fails for it).
//!
//! `force` is for the one place that may not refuse: a worker's compressed
//! copy of a batch it already holds (it replaces a larger reservation, so the
//! total stays within the limit plus one request).

use crate::sync::atomic::{AtomicU64, Ordering};

/// Bytes reserved against a limit, and the peak ever reserved.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicU64,
    peak: AtomicU64,
    limit: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            limit,
        }
    }

    /// Reserves `n` bytes if that keeps the total within the limit.
    #[inline]
    pub fn try_reserve(&self, n: u64) -> bool {
        // Relaxed: the word is a count, not a flag publishing other memory;
        // the CAS orders the updates among themselves.
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(n);
            if next > self.limit {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
                Err(current) => used = current,
            }
        }
    }

    /// Reserves `n` bytes whatever the total (see the module comment).
    pub fn force(&self, n: u64) {
        let next = self.used.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(next, Ordering::Relaxed);
    }

    /// Returns `n` bytes reserved earlier.
    #[inline]
    pub fn release(&self, n: u64) {
        let before = self.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(before >= n, "released {n} of {before} reserved bytes");
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The most ever reserved at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit_and_releases() {
        let b = MemoryBudget::new(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(41));
        assert!(b.try_reserve(40));
        assert!(!b.try_reserve(1));
        b.release(60);
        assert!(b.try_reserve(60));
        assert_eq!(b.peak(), 100);
        b.release(100);
        assert_eq!(b.used(), 0);
        b.force(150);
        assert_eq!(b.peak(), 150);
    }

    #[test]
    fn threads_never_pass_the_limit() {
        let b = std::sync::Arc::new(MemoryBudget::new(1000));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let b = b.clone();
                s.spawn(move || {
                    for i in 0..100_000u64 {
                        let n = 1 + i % 97;
                        if b.try_reserve(n) {
                            b.release(n);
                        }
                    }
                });
            }
        });
        assert_eq!(b.used(), 0);
        assert!(b.peak() <= 1000, "peak {}", b.peak());
    }
}
