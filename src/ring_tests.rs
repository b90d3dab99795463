//! Tests of the shard ring: order, wrap, full and stale laps, aborted
//! claims, and producers racing the consumer.

use super::*;
use std::sync::Arc;

fn ring(cap: usize) -> (Arc<Ring>, Consumer) {
    let r = Arc::new(Ring::new(cap));
    let c = r.take_consumer().unwrap();
    assert!(r.take_consumer().is_none());
    (r, c)
}

fn put(r: &Ring, tag: u32, data: &[u8]) -> Result<(), ClaimError> {
    let mut c = r.claim(data.len(), tag)?;
    c.buf().copy_from_slice(data);
    c.commit(tag);
    Ok(())
}

fn drain(c: &mut Consumer) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    c.read(usize::MAX, |t, p| {
        out.push((t, p.to_vec()));
        true
    });
    out
}

#[test]
fn records_come_out_in_order_with_tags() {
    let (r, mut c) = ring(256);
    put(&r, 1, b"hello").unwrap();
    put(&r, 2, b"").unwrap();
    put(&r, 3, &[7; 17]).unwrap();
    let got = drain(&mut c);
    assert_eq!(
        got,
        vec![(1, b"hello".to_vec()), (2, vec![]), (3, vec![7; 17])]
    );
    assert_eq!(r.used(), 0);
}

#[test]
fn the_ring_starts_on_a_cache_line() {
    for cap in [64, 256, 4096, 1 << 20] {
        let r = Ring::new(cap);
        assert_eq!(r.storage.base() as usize % LINE, 0, "capacity {cap}");
        // The allocation is the whole ring, no more.
        assert_eq!(r.storage.len * 8, cap);
    }
}

#[test]
fn read_lines_are_evicted_up_to_the_line_the_head_is_in_and_records_survive() {
    let (r, mut c) = ring(512);
    c.evict_read_lines();
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    assert_ne!(c.evict, Evict::Off);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    // Records of 16 + 1..=90 bytes: heads land inside lines and on their
    // edges, and several laps wrap the ring (with padding records).
    for (i, len) in (1..=90usize).cycle().step_by(7).take(200).enumerate() {
        let data: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        match put(&r, 1, &data) {
            Ok(()) => expected.push(data),
            Err(ClaimError::Full) => {
                // Read one record at a time, so the head stops mid-line.
                while put(&r, 1, &data).is_err() {
                    c.read(1, |_, p| {
                        got.push(p.to_vec());
                        true
                    });
                    let head = c.head();
                    assert_eq!(c.evicted, head / LINE as u64 * LINE as u64, "head {head}");
                }
                expected.push(data);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    got.extend(drain(&mut c).into_iter().map(|(_, p)| p));
    assert_eq!(got, expected);
    assert_eq!(c.evicted, c.head() / LINE as u64 * LINE as u64);
    assert!(c.head() > 4 * 512, "the records wrapped several laps");
}

#[test]
fn full_ring_refuses_then_accepts_after_drain() {
    let (r, mut c) = ring(64);
    // 16 header + 16 payload = 32 bytes each: two fill the ring.
    put(&r, 0, &[1; 16]).unwrap();
    put(&r, 0, &[2; 16]).unwrap();
    assert_eq!(put(&r, 0, &[3; 1]), Err(ClaimError::Full));
    assert_eq!(drain(&mut c).len(), 2);
    put(&r, 0, &[3; 1]).unwrap();
    assert_eq!(drain(&mut c), vec![(0, vec![3])]);
}

#[test]
fn a_completely_full_ring_is_read_once() {
    let (r, mut c) = ring(64);
    put(&r, 1, &[1; 16]).unwrap();
    put(&r, 2, &[2; 16]).unwrap();
    assert_eq!(r.used(), 64);
    assert_eq!(drain(&mut c), vec![(1, vec![1; 16]), (2, vec![2; 16])]);
    assert!(drain(&mut c).is_empty());
}

#[test]
fn too_large_is_refused() {
    let (r, _c) = ring(64);
    assert_eq!(r.max_payload(), 16);
    assert!(matches!(r.claim(17, 0), Err(ClaimError::TooLarge)));
}

#[test]
fn wrap_inserts_padding_and_keeps_data_intact() {
    let (r, mut c) = ring(128);
    for round in 0..50u8 {
        let len = (round as usize * 7) % 40;
        let data: Vec<u8> = (0..len as u8).map(|b| b ^ round).collect();
        put(&r, round as u32, &data).unwrap();
        assert_eq!(drain(&mut c), vec![(round as u32, data)]);
    }
}

#[test]
fn out_of_order_commit_is_not_read_early() {
    let (r, mut c) = ring(256);
    let mut a = r.claim(4, 1).unwrap();
    put(&r, 2, b"bbbb").unwrap();
    assert!(
        drain(&mut c).is_empty(),
        "must stop at the uncommitted record"
    );
    a.buf().copy_from_slice(b"aaaa");
    a.commit(1);
    assert_eq!(
        drain(&mut c),
        vec![(1, b"aaaa".to_vec()), (2, b"bbbb".to_vec())]
    );
}

#[test]
fn stale_laps_and_forged_payloads_are_not_read_as_records() {
    // Each payload holds, at every 16-byte word, the stamp the word's
    // index will need one lap later (as if recorded data had guessed
    // the key), and laps of same-size records leave old headers where
    // the next lap's go: the consumer must still stop at each record
    // not yet committed.
    let (r, mut c) = ring(256);
    let forged = |claim: &Claim<'_>| -> Vec<u8> {
        (0..96u64)
            .step_by(8)
            .flat_map(|j| r.stamp(claim.pos + 16 + j + 256).to_le_bytes())
            .collect()
    };
    for lap in 0..40 {
        let mut held = r.claim(96, 1).unwrap();
        let mut next = r.claim(96, 2).unwrap();
        let (a, b) = (forged(&held), forged(&next));
        next.buf().copy_from_slice(&b);
        next.commit(2);
        assert!(drain(&mut c).is_empty(), "lap {lap}: read past a claim");
        held.buf().copy_from_slice(&a);
        held.commit(1);
        assert_eq!(drain(&mut c), vec![(1, a), (2, b)]);
    }
}

#[test]
fn dropped_claim_becomes_padding() {
    let (r, mut c) = ring(256);
    drop(r.claim(10, 1).unwrap());
    put(&r, 2, b"x").unwrap();
    assert_eq!(drain(&mut c), vec![(2, b"x".to_vec())]);
}

#[test]
fn read_stops_when_callback_refuses() {
    let (r, mut c) = ring(256);
    put(&r, 1, b"a").unwrap();
    put(&r, 2, b"b").unwrap();
    let n = c.read(usize::MAX, |t, _| t == 1);
    assert_eq!(n, 1);
    assert_eq!(drain(&mut c), vec![(2, b"b".to_vec())]);
}

#[test]
fn concurrent_producers_lose_nothing() {
    let (r, mut c) = ring(1024);
    const PER: u32 = if cfg!(miri) { 50 } else { 20_000 };
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    let bytes = i.to_le_bytes();
                    let len = 4 + (i % 13) as usize;
                    loop {
                        match r.claim(len, p) {
                            Ok(mut cl) => {
                                cl.buf()[..4].copy_from_slice(&bytes);
                                cl.commit(p);
                                break;
                            }
                            Err(ClaimError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    let mut next = [0u32; 3];
    let mut total = 0;
    while total < 3 * PER {
        total += c.read(usize::MAX, |t, p| {
            let v = u32::from_le_bytes(p[..4].try_into().unwrap());
            assert_eq!(v, next[t as usize], "per-producer order");
            assert_eq!(p.len(), 4 + (v % 13) as usize);
            next[t as usize] += 1;
            true
        }) as u32;
        std::thread::yield_now();
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(next, [PER; 3]);
}
