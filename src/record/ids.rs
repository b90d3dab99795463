//! Fresh trace and span ids for hosts that let otlpflow choose them: a
//! per-thread SplitMix64 sequence seeded from the clock and the thread's
//! stack address, so threads never share a sequence and nothing is locked.
//! The ids are unique with overwhelming probability, not secret: W3C trace
//! context asks for randomness, not unpredictability.

use std::cell::Cell;

/// SplitMix64's output function: a bijection of `u64` that spreads every
/// input bit over the output.
#[inline]
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

thread_local! {
    /// This thread's generator state.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = crate::clock::now_unix_nano();
    let here = &t as *const u64 as u64;
    splitmix(t ^ here.rotate_left(32))
}

/// A fresh non-zero 64-bit id from this thread's generator.
pub fn next_id() -> u64 {
    STATE.with(|c| loop {
        let s = c.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        c.set(s);
        let v = splitmix(s);
        if v != 0 {
            return v;
        }
    })
}

/// A fresh trace id (16 bytes, not all zero).
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_id().to_be_bytes());
    id[8..].copy_from_slice(&next_id().to_be_bytes());
    id
}

/// A fresh span id (8 bytes, not zero).
pub fn new_span_id() -> [u8; 8] {
    next_id().to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nonzero_and_distinct_across_threads() {
        let mut all: Vec<u64> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| next_id()).collect::<Vec<_>>()))
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(all.iter().all(|&v| v != 0));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
        assert_ne!(new_trace_id(), [0; 16]);
    }
}
