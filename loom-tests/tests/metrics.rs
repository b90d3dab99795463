//! Loom check of the histogram update and collection protocol (the real
//! `src/metrics/cell.rs`): recorders racing a collector never lose a value
//! and never count one twice, whatever the interleaving.

use std::sync::Arc;

use loom::thread;
use loom_tests::cell::DoubleBuffered;

#[test]
fn recorders_racing_a_collection_lose_nothing_and_double_nothing() {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(|| {
        let h = Arc::new(DoubleBuffered::new(2));
        let recorders: Vec<_> = (0..2)
            .map(|i| {
                let h = h.clone();
                thread::spawn(move || h.record(i, 1.0 + i as f64))
            })
            .collect();
        let first = h.collect();
        for r in recorders {
            r.join().unwrap();
        }
        let second = h.collect();
        let count = first.count + second.count;
        let sum = first.sum + second.sum;
        assert_eq!(count, 2, "{first:?} {second:?}");
        assert_eq!(sum, 3.0);
        for i in 0..2 {
            assert_eq!(first.buckets[i] + second.buckets[i], 1);
        }
        // Each drained set is consistent: its count is its buckets' sum.
        assert_eq!(first.count, first.buckets.iter().sum::<u64>());
        assert_eq!(second.count, second.buckets.iter().sum::<u64>());
    });
}

#[test]
fn one_recorder_racing_two_collections() {
    loom::model(|| {
        let h = Arc::new(DoubleBuffered::new(2));
        let h2 = h.clone();
        let r = thread::spawn(move || h2.record(0, 1.0));
        let a = h.collect();
        r.join().unwrap();
        let b = h.collect();
        assert_eq!(a.count + b.count, 1, "{a:?} {b:?}");
    });
}
