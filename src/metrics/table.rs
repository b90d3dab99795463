//! An instrument's series, one per distinct attribute set, in an
//! open-addressing table that grows with them. Finding a series is
//! lock-free (a hash, a few loads and a byte comparison in the newest
//! table); making one takes the table's lock, doubling the table when it
//! would be over half full. The table used to be made at its final size,
//! twice the cardinality limit (4,096 slots, 32 KiB), for every instrument:
//! a host that names instruments per route or per tenant held 335 MB for
//! 10,000 instruments of one series each.
//!
//! A table replaced by a larger one stays allocated until the instrument
//! drops, because a reader may still be probing it (at most as much again
//! as the newest table). Every series is in the newest table; a reader that
//! misses it in an older one takes the lock and looks in the newest.

use crate::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex};

/// Slots of a new table: small, since most instruments have few series.
/// (Under loom, smaller still, so that a model of a few series grows.)
#[cfg(not(loom))]
const FIRST_CAPACITY: usize = 8;
#[cfg(loom)]
const FIRST_CAPACITY: usize = 2;

/// What the table holds: a series, found by the hash and the bytes of its
/// attribute set.
pub trait Keyed {
    /// The hash of `key`.
    fn key_hash(&self) -> u64;
    /// The bytes that name it.
    fn key(&self) -> &[u8];
}

/// A table's slots: null, or a series from `Arc::into_raw` whose count the
/// newest table owns.
struct Slots<T>(Box<[AtomicPtr<T>]>);

impl<T> Slots<T> {
    fn new(capacity: usize) -> Box<Slots<T>> {
        Box::new(Slots(
            (0..capacity)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        ))
    }

    /// Stores `s` in the first free slot from its hash (under the lock).
    fn put(&self, s: *mut T, hash: u64) {
        let mask = self.0.len() - 1;
        let mut i = hash as usize & mask;
        // Release: a reader's Acquire load of the slot sees the series'
        // contents.
        while self.0[i]
            .compare_exchange(
                std::ptr::null_mut(),
                s,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            i = (i + 1) & mask;
        }
    }
}

/// The series of one instrument.
pub struct SeriesTable<T: Keyed> {
    /// The newest table. Acquire/Release: a reader that sees it sees every
    /// series copied into it.
    newest: AtomicPtr<Slots<T>>,
    /// Every table made, the newest last; only their owner, and the lock
    /// for making series.
    // Boxed: `newest` and readers point at a table while the list grows.
    #[allow(clippy::vec_box)]
    tables: Mutex<Vec<Box<Slots<T>>>>,
    /// Series made (at most `limit`); changed only under `tables`' lock.
    len: AtomicUsize,
    limit: usize,
}

// `len` counts series for `is_full` and the tests; nothing asks whether a
// table is empty.
#[allow(clippy::len_without_is_empty)]
impl<T: Keyed> SeriesTable<T> {
    /// A table for at most `limit` series.
    pub fn new(limit: usize) -> SeriesTable<T> {
        let first = Slots::new(FIRST_CAPACITY);
        SeriesTable {
            newest: AtomicPtr::new(&*first as *const Slots<T> as *mut Slots<T>),
            tables: Mutex::new(vec![first]),
            len: AtomicUsize::new(0),
            limit,
        }
    }

    /// How many series there are.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no more series can be made.
    pub fn is_full(&self) -> bool {
        self.len() >= self.limit
    }

    fn newest(&self) -> &Slots<T> {
        // SAFETY: tables are freed only when `self` drops; the Acquire pairs
        // with the Release store that published the table.
        unsafe { &*self.newest.load(Ordering::Acquire) }
    }

    /// The series `bytes` (hashing to `hash`) names, made by `make` if new;
    /// `None` once `limit` series exist (the caller's overflow series).
    #[inline]
    pub fn get_or_make(&self, hash: u64, bytes: &[u8], make: impl FnOnce() -> T) -> Option<&T> {
        if let Some(s) = probe(self.newest(), hash, bytes) {
            return Some(s);
        }
        // Full: nothing more is made, so an attribute set past the limit
        // (every measurement of a cardinality explosion) takes no lock.
        // Acquire pairs with the Release of the last make: the table it
        // published and the series it put are seen.
        if self.len.load(Ordering::Acquire) >= self.limit {
            return probe(self.newest(), hash, bytes);
        }
        self.make(hash, bytes, make)
    }

    #[cold]
    fn make(&self, hash: u64, bytes: &[u8], make: impl FnOnce() -> T) -> Option<&T> {
        let mut tables = self.tables.lock();
        // Another thread may have made it, or grown the table, meanwhile.
        let mut slots = self.newest();
        if let Some(s) = probe(slots, hash, bytes) {
            return Some(s);
        }
        let len = self.len();
        if len >= self.limit {
            return None;
        }
        // At most half full, so that every probe meets a free slot.
        if (len + 1) * 2 > slots.0.len() {
            let bigger = Slots::new(slots.0.len() * 2);
            for p in slots.0.iter() {
                let p = p.load(Ordering::Acquire);
                if !p.is_null() {
                    // SAFETY: a live series (see `Slots`).
                    bigger.put(p, unsafe { (*p).key_hash() });
                }
            }
            self.newest.store(
                &*bigger as *const Slots<T> as *mut Slots<T>,
                Ordering::Release,
            );
            tables.push(bigger);
            slots = self.newest();
        }
        let fresh = Arc::into_raw(Arc::new(make())).cast_mut();
        slots.put(fresh, hash);
        // Release: see `get_or_make`.
        self.len.store(len + 1, Ordering::Release);
        // SAFETY: from `Arc::into_raw`; the table owns that count until it
        // drops.
        Some(unsafe { &*fresh })
    }

    /// Every series (those made while this runs may be missed).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.newest().0.iter().filter_map(|p| {
            let p = p.load(Ordering::Acquire);
            // SAFETY: as in `newest`: live until `self` drops.
            (!p.is_null()).then(|| unsafe { &*p })
        })
    }
}

/// The series `bytes` names in `slots`, if it is there.
#[inline]
fn probe<'a, T: Keyed>(slots: &'a Slots<T>, hash: u64, bytes: &[u8]) -> Option<&'a T> {
    let mask = slots.0.len() - 1;
    let mut i = hash as usize & mask;
    loop {
        // Acquire pairs with the Release of `put`: a non-null pointer comes
        // with its series' contents.
        let p = slots.0[i].load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null slots hold a live series (see `Slots`).
        let s = unsafe { &*p };
        if s.key_hash() == hash && s.key() == bytes {
            return Some(s);
        }
        // At most half full: a free slot is always ahead.
        i = (i + 1) & mask;
    }
}

impl<T: Keyed> Drop for SeriesTable<T> {
    fn drop(&mut self) {
        // Every series is in the newest table, which owns their counts.
        for p in self.newest().0.iter() {
            let p = p.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: the table's own count, from `Arc::into_raw`.
                drop(unsafe { Arc::from_raw(p) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::Series;
    use super::*;

    fn series(hash: u64, bytes: &[u8]) -> Series {
        Series::new(hash, bytes.to_vec(), super::super::Kind::Counter, 1)
    }

    fn get(t: &SeriesTable<Series>, n: u64) -> Option<&Series> {
        let bytes = n.to_le_bytes();
        // Few distinct hashes: long probe runs and collisions.
        let hash = n % 3;
        t.get_or_make(hash, &bytes, || series(hash, &bytes))
    }

    #[test]
    fn the_table_grows_with_its_series_up_to_the_limit() {
        let t = SeriesTable::new(100);
        assert_eq!(t.newest().0.len(), FIRST_CAPACITY);
        let made: Vec<*const Series> = (0..100).map(|n| get(&t, n).unwrap() as *const _).collect();
        assert_eq!(t.len(), 100);
        assert!(t.is_full());
        // Half full at most: 100 series in 256 slots, each found again.
        assert_eq!(t.newest().0.len(), 256);
        for (n, p) in made.iter().enumerate() {
            assert!(std::ptr::eq(get(&t, n as u64).unwrap(), *p));
        }
        assert!(get(&t, 100).is_none(), "past the limit");
        assert_eq!(t.iter().count(), 100);
        // One series: one small table, where a fixed table took 4,096 slots.
        let one = SeriesTable::new(2000);
        assert!(get(&one, 7).is_some());
        assert_eq!(one.newest().0.len(), FIRST_CAPACITY);
    }

    #[test]
    fn threads_making_the_same_series_at_once_get_one_each() {
        let t = SeriesTable::new(10_000);
        let seen: Vec<Vec<usize>> = std::thread::scope(|s| {
            let hands: Vec<_> = (0..4)
                .map(|k| {
                    let t = &t;
                    s.spawn(move || {
                        // Each thread walks the same 2,000 sets in its own
                        // order, growing the table as it goes.
                        (0..2_000u64)
                            .map(|i| (i * [1, 3, 7, 9][k]) % 2_000)
                            .map(|n| (n, get(t, n).unwrap() as *const Series as usize))
                            .collect::<std::collections::BTreeMap<_, _>>()
                            .into_values()
                            .collect()
                    })
                })
                .collect();
            hands.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "one series per set");
        assert_eq!(t.len(), 2_000);
        assert_eq!(t.iter().count(), 2_000);
    }
}
