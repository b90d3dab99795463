//! The lock-free heart of a histogram series: two sets of counters, one hot
//! (written by recorders), one cold (drained by the collector). Recording
//! touches only the hot set; collection flips which set is hot, waits for
//! the recorders still inside the old set to leave, and drains it. No lock
//! on either side, and no recorded value is lost or counted twice: the loom
//! model in `loom-tests/tests/metrics.rs` checks it under every
//! interleaving.
//!
//! The protocol: a recorder increments the set's `writers`, then re-reads
//! `hot` with a read-modify-write (`fetch_add(0)`); if the set is no longer
//! hot it leaves (decrement) and retries on the other. The collector flips
//! `hot` with `fetch_add(1)`, then waits for the old set's `writers` to
//! reach zero. Both accesses to `hot` are RMWs, so they are ordered in
//! `hot`'s modification order: if the recorder's comes first it read the
//! old index and the collector's flip synchronises with it (AcqRel), so
//! the collector's wait sees the recorder's increment and then its Release
//! decrement after the writes; if the flip comes first the recorder sees it
//! and backs out before writing. (A plain SeqCst re-read would do on real
//! hardware, Dekker-style; loom models SeqCst as AcqRel and found that
//! version losing a value, so the proof here does not lean on SeqCst.)
//! Only one collector runs at a time (the caller serialises collections).

use crate::sync::atomic::{AtomicU64, Ordering};

/// One set of counters.
struct Cell {
    /// Recorders inside this set now.
    writers: AtomicU64,
    count: AtomicU64,
    /// f64 bits.
    sum: AtomicU64,
    /// f64 bits; +inf when empty.
    min: AtomicU64,
    /// f64 bits; -inf when empty.
    max: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl Cell {
    fn new(buckets: usize) -> Cell {
        Cell {
            writers: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What one collection drained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Drained {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Least value (+inf if none).
    pub min: f64,
    /// Greatest value (-inf if none).
    pub max: f64,
    /// Per bucket.
    pub buckets: Vec<u64>,
}

/// A histogram series' counters, double-buffered.
pub struct DoubleBuffered {
    /// Low bit: the index of the hot set.
    hot: AtomicU64,
    cells: [Cell; 2],
}

/// Adds `v` to an f64 stored as bits (CAS loop; Relaxed: a counter, ordered
/// by the `writers` protocol around it).
fn add_f64(a: &AtomicU64, v: f64) {
    let mut cur = a.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(cur) + v).to_bits();
        match a.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(c) => cur = c,
        }
    }
}

/// Moves an f64 stored as bits towards `v` if `better(v, current)`.
fn update_f64(a: &AtomicU64, v: f64, better: impl Fn(f64, f64) -> bool) {
    let mut cur = a.load(Ordering::Relaxed);
    while better(v, f64::from_bits(cur)) {
        match a.compare_exchange_weak(cur, v.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(c) => cur = c,
        }
    }
}

impl DoubleBuffered {
    /// Counters for `buckets` buckets.
    pub fn new(buckets: usize) -> DoubleBuffered {
        DoubleBuffered {
            hot: AtomicU64::new(0),
            cells: [Cell::new(buckets), Cell::new(buckets)],
        }
    }

    /// Records `v` into `bucket`. Lock-free: retries only if a collection
    /// flipped the sets between its two loads.
    #[inline]
    pub fn record(&self, bucket: usize, v: f64) {
        loop {
            let i = (self.hot.load(Ordering::Acquire) & 1) as usize;
            let c = &self.cells[i];
            // Enter the set, then check it is still hot with an RMW (see the
            // module comment).
            c.writers.fetch_add(1, Ordering::AcqRel);
            if (self.hot.fetch_add(0, Ordering::AcqRel) & 1) as usize != i {
                c.writers.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            c.count.fetch_add(1, Ordering::Relaxed);
            if let Some(b) = c.buckets.get(bucket) {
                b.fetch_add(1, Ordering::Relaxed);
            }
            add_f64(&c.sum, v);
            update_f64(&c.min, v, |v, cur| v < cur);
            update_f64(&c.max, v, |v, cur| v > cur);
            // Release: the collector's Acquire load of `writers` sees the
            // writes above once it sees this decrement.
            c.writers.fetch_sub(1, Ordering::Release);
            return;
        }
    }

    /// Flips the sets and drains the one that was hot: everything recorded
    /// before this call (and nothing twice). One collector at a time.
    pub fn collect(&self) -> Drained {
        let old = (self.hot.fetch_add(1, Ordering::AcqRel) & 1) as usize;
        let c = &self.cells[old];
        // Acquire pairs with the recorders' Release decrement.
        #[cfg(not(loom))]
        let mut spins = 0u32;
        while c.writers.load(Ordering::Acquire) != 0 {
            crate::sync::spin_yield();
            // A recorder inside this cell when the process forked never
            // leaves it in the child; after ~a second of yielding, drain
            // anyway rather than hang (a value it was adding may then show
            // up one collection late). Never reached otherwise: a recorder
            // holds the cell for a few instructions.
            #[cfg(not(loom))]
            {
                spins += 1;
                if spins > 1_000_000 {
                    break;
                }
            }
        }
        Drained {
            count: c.count.swap(0, Ordering::Relaxed),
            sum: f64::from_bits(c.sum.swap(0f64.to_bits(), Ordering::Relaxed)),
            min: f64::from_bits(c.min.swap(f64::INFINITY.to_bits(), Ordering::Relaxed)),
            max: f64::from_bits(c.max.swap(f64::NEG_INFINITY.to_bits(), Ordering::Relaxed)),
            buckets: c
                .buckets
                .iter()
                .map(|b| b.swap(0, Ordering::Relaxed))
                .collect(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn collections_see_every_value_once() {
        let h = std::sync::Arc::new(DoubleBuffered::new(3));
        let per_thread = 200_000u64;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collector = {
            let h = h.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut total = Drained {
                    buckets: vec![0; 3],
                    ..Drained::default()
                };
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let d = h.collect();
                    total.count += d.count;
                    total.sum += d.sum;
                    for (t, b) in total.buckets.iter_mut().zip(d.buckets) {
                        *t += b;
                    }
                }
                total
            })
        };
        std::thread::scope(|s| {
            for t in 0..2 {
                let h = &h;
                s.spawn(move || {
                    for i in 0..per_thread {
                        h.record(((i + t) % 3) as usize, 1.0);
                    }
                });
            }
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = collector.join().unwrap();
        let last = h.collect();
        total.count += last.count;
        total.sum += last.sum;
        for (t, b) in total.buckets.iter_mut().zip(last.buckets) {
            *t += b;
        }
        assert_eq!(total.count, 2 * per_thread);
        assert_eq!(total.sum, (2 * per_thread) as f64);
        assert_eq!(total.buckets.iter().sum::<u64>(), 2 * per_thread);
    }
}
