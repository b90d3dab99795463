//! Loom check of an instrument's series table (the real
//! `src/metrics/table.rs`): threads finding and making series while the
//! table grows get one series per attribute set, never lose one, and a full
//! table makes none.

use loom::sync::Arc;
use loom::thread;
use loom_tests::table::{Keyed, SeriesTable};

struct Entry {
    hash: u64,
    key: Vec<u8>,
}

impl Keyed for Entry {
    fn key_hash(&self) -> u64 {
        self.hash
    }
    fn key(&self) -> &[u8] {
        &self.key
    }
}

/// The series of key `n` (made if new) as an address, 0 past the limit.
/// Two hashes for three keys: probes run past each other.
fn get(t: &SeriesTable<Entry>, n: u8) -> usize {
    let key = [n];
    let hash = u64::from(n % 2);
    t.get_or_make(hash, &key, || Entry {
        hash,
        key: key.to_vec(),
    })
    .map_or(0, |e| e as *const Entry as usize)
}

fn model() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b
}

#[test]
fn makers_racing_while_the_table_grows_get_one_series_per_key() {
    model().check(|| {
        // Two slots at first (under loom): the second series doubles the
        // table, the third doubles it again.
        let t = Arc::new(SeriesTable::new(4));
        let a = {
            let t = t.clone();
            thread::spawn(move || (get(&t, 0), get(&t, 1)))
        };
        let b = {
            let t = t.clone();
            thread::spawn(move || (get(&t, 1), get(&t, 2)))
        };
        // A reader meanwhile sees only whole series.
        for e in t.iter() {
            assert_eq!(e.key.len(), 1);
        }
        let (a0, a1) = a.join().unwrap();
        let (b1, b2) = b.join().unwrap();
        assert_eq!(a1, b1, "one series for key 1");
        assert_eq!((get(&t, 0), get(&t, 1), get(&t, 2)), (a0, a1, b2));
        assert!(a0 != 0 && a1 != 0 && b2 != 0);
        assert_eq!(t.len(), 3);
        assert_eq!(t.iter().count(), 3);
    });
}

#[test]
fn a_full_table_makes_nothing_more() {
    model().check(|| {
        let t = Arc::new(SeriesTable::new(1));
        let a = {
            let t = t.clone();
            thread::spawn(move || get(&t, 0))
        };
        let b = get(&t, 1);
        let a = a.join().unwrap();
        // Exactly one of the two was made; the other is past the limit.
        assert!((a == 0) != (b == 0), "{a} {b}");
        assert_eq!((get(&t, 0), get(&t, 1)), (a, b));
        assert_eq!(t.len(), 1);
        assert!(t.is_full());
    });
}
