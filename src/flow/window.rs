//! A sliding-window limiter with fixed memory: "at most `limit` events in
//! any window of `slots` consecutive sub-windows". Each sub-window is one
//! atomic word holding its index (high 32 bits) and its count (low 32 bits);
//! a word whose index is stale counts as zero and is reset by the first
//! event of its new sub-window. There is no queue of timestamps.
//!
//! Admission is exact at sub-window granularity: an event is counted by a
//! CAS on the current sub-window's word, after summing the others, so two
//! racing events cannot both take the last unit (the loser's CAS fails and
//! it re-reads the count). The window slides in steps of one sub-window.

use crate::sync::atomic::{AtomicU64, Ordering};

/// At most `limit` events per window of `slots` sub-windows.
#[derive(Debug)]
pub struct SlidingWindow {
    slots: Box<[AtomicU64]>,
    limit: u64,
    slot_ns: u64,
    #[cfg(not(loom))]
    epoch: std::time::Instant,
}

const COUNT_MASK: u64 = 0xFFFF_FFFF;

impl SlidingWindow {
    /// A window of `window_ns` nanoseconds in `slots` sub-windows (2..=64)
    /// admitting at most `limit` events (at most 2^32 - 1).
    pub fn new(limit: u64, window_ns: u64, slots: usize) -> SlidingWindow {
        let slots = slots.clamp(2, 64);
        SlidingWindow {
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            limit: limit.min(COUNT_MASK),
            slot_ns: (window_ns / slots as u64).max(1),
            #[cfg(not(loom))]
            epoch: std::time::Instant::now(),
        }
    }

    /// Admits `n` events now if the window has room for them.
    #[cfg(not(loom))]
    pub fn try_acquire(&self, n: u64) -> bool {
        self.try_acquire_at(n, self.epoch.elapsed().as_nanos() as u64)
    }

    /// Admits `n` events at `now_ns` (ns since the epoch) if there is room.
    pub fn try_acquire_at(&self, n: u64, now_ns: u64) -> bool {
        let k = self.slots.len() as u64;
        let mut index = now_ns / self.slot_ns;
        loop {
            let current = &self.slots[(index % k) as usize];
            // Relaxed loads: each word is self-describing (index + count),
            // and the CAS below is what serialises admissions into the
            // current sub-window; words of older sub-windows do not change
            // until the window has slid past them.
            let others: u64 = (1..k)
                .filter_map(|back| index.checked_sub(back))
                .map(|i| {
                    let w = self.slots[(i % k) as usize].load(Ordering::Relaxed);
                    if w >> 32 == i & COUNT_MASK {
                        w & COUNT_MASK
                    } else {
                        0
                    }
                })
                .sum();
            let word = current.load(Ordering::Relaxed);
            // A caller whose clock reading lags may find its sub-window
            // already reused by a later one: count in that later one rather
            // than overwrite it (indices are compared modulo 2^32).
            let ahead = ((word >> 32) as u32).wrapping_sub(index as u32) as i32;
            if word != 0 && ahead > 0 {
                index += ahead as u64;
                continue;
            }
            let mine = if word >> 32 == index & COUNT_MASK {
                word & COUNT_MASK
            } else {
                0
            };
            if others + mine + n > self.limit {
                return false;
            }
            let next = ((index & COUNT_MASK) << 32) | (mine + n);
            if current
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn at_most_limit_per_window_and_it_slides() {
        // 10 per 100 ms window of 4 slots (25 ms each).
        let w = SlidingWindow::new(10, 100_000_000, 4);
        let ms = 1_000_000;
        for _ in 0..10 {
            assert!(w.try_acquire_at(1, 0));
        }
        assert!(!w.try_acquire_at(1, 50 * ms), "the window still holds 10");
        assert!(!w.try_acquire_at(1, 99 * ms));
        assert!(w.try_acquire_at(4, 100 * ms), "slot 0 slid out");
        assert!(w.try_acquire_at(6, 120 * ms));
        assert!(!w.try_acquire_at(1, 120 * ms));
        assert!(
            !w.try_acquire_at(11, 10_000 * ms),
            "more than the limit never fits"
        );
    }

    #[test]
    fn threads_never_exceed_the_limit() {
        let w = std::sync::Arc::new(SlidingWindow::new(1000, 60_000_000_000, 8));
        let admitted: u64 = std::thread::scope(|s| {
            (0..4)
                .map(|_| {
                    let w = w.clone();
                    s.spawn(move || (0..5000).filter(|_| w.try_acquire(1)).count() as u64)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum()
        });
        assert_eq!(admitted, 1000);
    }
}
