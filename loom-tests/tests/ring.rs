//! Loom checks of the shard ring: every interleaving (within a preemption
//! bound of 2) of two producers and the consumer delivers each committed
//! record exactly once, intact and in per-producer order, through the wrap,
//! a full ring and out-of-order commits.

use std::sync::Arc;

use loom::thread;
use loom_tests::ring::{ClaimError, Consumer, Ring};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

fn put(r: &Ring, tag: u32, byte: u8, len: usize) -> Result<(), ClaimError> {
    let mut c = r.claim(len, tag)?;
    c.buf().fill(byte);
    c.commit(tag);
    Ok(())
}

/// Reads until `want` records arrived, checking each is intact.
fn read_all(c: &mut Consumer, want: usize) -> Vec<(u32, u8, usize)> {
    let mut got = Vec::new();
    while got.len() < want {
        c.read(usize::MAX, |tag, p| {
            assert!(p.iter().all(|b| *b == p[0]), "torn record {p:?}");
            got.push((tag, p.first().copied().unwrap_or(0), p.len()));
            true
        });
        if got.len() < want {
            thread::yield_now();
        }
    }
    got
}

fn new_ring(cap: usize) -> (Arc<Ring>, Consumer) {
    let r = Arc::new(Ring::new(cap));
    let c = r.take_consumer().unwrap();
    (r, c)
}

#[test]
fn two_producers_one_consumer() {
    model(|| {
        let (r, mut c) = new_ring(64);
        let r1 = r.clone();
        let p1 = thread::spawn(move || put(&r1, 1, 0xA1, 5).unwrap());
        let r2 = r.clone();
        let p2 = thread::spawn(move || put(&r2, 2, 0xB2, 3).unwrap());
        let mut got = read_all(&mut c, 2);
        p1.join().unwrap();
        p2.join().unwrap();
        got.sort();
        assert_eq!(got, vec![(1, 0xA1, 5), (2, 0xB2, 3)]);
        assert_eq!(r.used(), 0);
    });
}

#[test]
fn wrap_around_with_padding() {
    model(|| {
        let (r, mut c) = new_ring(128);
        // Move the positions to 80 of 128: the next 32-byte record fits, the
        // one after must wrap behind a 16-byte padding record (a header
        // alone).
        put(&r, 0, 0, 48).unwrap();
        put(&r, 0, 0, 0).unwrap();
        assert_eq!(read_all(&mut c, 2).len(), 2);
        let r1 = r.clone();
        let p1 = thread::spawn(move || put(&r1, 1, 0x11, 8).unwrap());
        let r2 = r.clone();
        let p2 = thread::spawn(move || put(&r2, 2, 0x22, 8).unwrap());
        let mut got = read_all(&mut c, 2);
        p1.join().unwrap();
        p2.join().unwrap();
        got.sort();
        assert_eq!(got, vec![(1, 0x11, 8), (2, 0x22, 8)]);
    });
}

#[test]
fn full_ring_refuses_and_loses_nothing() {
    model(|| {
        // 64 bytes hold two 16-byte-payload records (32 bytes each).
        let (r, mut c) = new_ring(64);
        let r1 = r.clone();
        let p1 = thread::spawn(move || {
            let a = put(&r1, 1, 0x10, 16).is_ok() as usize;
            a + put(&r1, 1, 0x11, 16).is_ok() as usize
        });
        let r2 = r.clone();
        let p2 = thread::spawn(move || put(&r2, 2, 0x20, 16).is_ok() as usize);
        let ok = p1.join().unwrap() + p2.join().unwrap();
        assert!(ok >= 2, "an empty 64-byte ring takes two records");
        let got = read_all(&mut c, ok);
        assert_eq!(got.len(), ok);
        // Producer 1's records keep their order.
        let p1_bytes: Vec<u8> = got.iter().filter(|g| g.0 == 1).map(|g| g.1).collect();
        assert!(p1_bytes.windows(2).all(|w| w[0] < w[1]), "{p1_bytes:?}");
    });
}

#[test]
fn out_of_order_commit() {
    model(|| {
        let (r, mut c) = new_ring(128);
        let claim = r.claim(4, 1).unwrap();
        let r2 = r.clone();
        let p2 = thread::spawn(move || put(&r2, 2, 0x22, 4).unwrap());
        let mut claim = claim;
        claim.buf().fill(0x11);
        let consumer = thread::spawn(move || read_all(&mut c, 2));
        claim.commit(1);
        p2.join().unwrap();
        let got = consumer.join().unwrap();
        // The first claim comes out first even if committed last.
        assert_eq!(got, vec![(1, 0x11, 4), (2, 0x22, 4)]);
    });
}
