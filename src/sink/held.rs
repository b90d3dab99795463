//! The receiver's bound on request bytes held while their bodies arrive.
//! Each request may be up to `MAX_MESSAGE`, but without a bound over all of
//! them a client could open many streams (256 per HTTP/2 connection, on up
//! to `max_connections` connections), send most of a large message on each
//! and never finish: one connection with 32 such streams of 48 MiB held
//! about 1.5 GB here. A body that would take the total past
//! `SinkOptions::max_buffered_bytes` is refused as throttled (retryable),
//! and what it held is given back.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes held by one request's body, given back when dropped.
pub(super) struct Held<'a> {
    total: &'a AtomicUsize,
    limit: usize,
    bytes: usize,
}

impl<'a> Held<'a> {
    /// Nothing held yet, against `total` and its `limit`.
    pub(super) fn new(total: &'a AtomicUsize, limit: usize) -> Held<'a> {
        Held {
            total,
            limit,
            bytes: 0,
        }
    }

    /// Takes `n` more bytes if the total stays within the limit.
    pub(super) fn take(&mut self, n: usize) -> bool {
        // Relaxed: the total is a count with no other memory to order; the
        // compare-exchange alone keeps it within the limit.
        let taken = self
            .total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_add(n).filter(|sum| *sum <= self.limit)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_stays_within_the_limit_and_comes_back() {
        let total = AtomicUsize::new(0);
        let mut a = Held::new(&total, 100);
        let mut b = Held::new(&total, 100);
        assert!(a.take(60));
        assert!(!b.take(41));
        assert!(b.take(40));
        assert!(!a.take(1));
        drop(a);
        assert_eq!(total.load(Ordering::Relaxed), 40);
        assert!(b.take(60));
        drop(b);
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }
}
