//! The shard ring: a bounded multi-producer single-consumer byte ring of
//! variable-length records. Host threads encode telemetry straight into it on
//! their hot path; one worker thread drains it.
//!
//! Where the algorithm comes from: Aeron's `ManyToOneRingBuffer` (a record
//! header carrying the length, space claimed by a CAS on the tail, a padding
//! record at the wrap) and the Linux BPF ring buffer (reserve/commit,
//! commits may land out of order, the consumer stops at the first
//! uncommitted record). Unlike both, the consumer does not zero what it
//! consumed: a record is committed when its header holds its *stamp*, a
//! keyed hash of the record's absolute position, which no earlier lap wrote
//! there (positions never repeat) and which bytes a host recorded cannot
//! forge (the key is random per ring). So the consumer only reads the
//! ring's memory and never writes it: no memset per record, and the lines
//! producers write next are not first pulled dirty into the consumer's
//! cache.
//!
//! Layout: `capacity` bytes (a power of two), records aligned to 16 bytes.
//! A record is a 16-byte header followed by the payload:
//!
//! ```text
//! word 0  stamp(position): the record is committed when this matches
//! word 1  bits 32..63 tag (the caller's record kind, or PAD for padding or
//!         aborted records), bits 0..32 payload length in bytes
//! ```
//!
//! Positions (`head`, `tail`) are byte counts that only grow; the index in the
//! buffer is `position & (capacity - 1)`.
//!
//! This file holds all of the ring's `unsafe`. Under `cfg(loom)` it is
//! compiled by `loom-tests/` with loom's atomics and cells, where the header
//! words and the payload bytes live in separate arrays so that loom can track
//! every access; otherwise the header is the first two words of the record.

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Records start at multiples of this many bytes (so that the space left
/// at the end of the buffer always holds a padding record's header).
pub const ALIGN: usize = 16;
/// Size of the header in front of every record: the stamp, then tag and
/// length.
pub const HEADER: usize = 16;
/// Largest tag a caller may use; higher values are reserved by the ring.
pub const MAX_TAG: u32 = PAD_TAG - 1;

const PAD_TAG: u32 = 0x7FFF_FFFF;
const TAG_MASK: u64 = 0x7FFF_FFFF;

const fn align_up(n: u64) -> u64 {
    (n + (ALIGN as u64 - 1)) & !(ALIGN as u64 - 1)
}

const fn meta_word(tag: u32, len: u32) -> u64 {
    ((tag as u64 & TAG_MASK) << 32) | len as u64
}

/// A random key per ring, from the standard library's per-process random
/// hash keys.
fn random_key() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64)
}

/// Why a claim was refused. Refusals are values, never allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Not enough free space right now; the consumer will make some.
    Full,
    /// The record can never fit: larger than [`Ring::max_payload`].
    TooLarge,
}

/// The backing memory. With std atomics the header is the first word of the
/// record; under loom the headers and bytes are separate, tracked arrays.
struct Storage {
    #[cfg(not(loom))]
    words: Box<[AtomicU64]>,
    #[cfg(loom)]
    words: Box<[AtomicU64]>,
    #[cfg(loom)]
    bytes: Box<[crate::sync::UnsafeCell<u8>]>,
}

impl Storage {
    fn new(capacity: usize) -> Self {
        let words = (0..capacity / 8).map(|_| AtomicU64::new(0)).collect();
        Storage {
            words,
            #[cfg(loom)]
            bytes: (0..capacity)
                .map(|_| crate::sync::UnsafeCell::new(0u8))
                .collect(),
        }
    }

    /// The stamp word of the record starting at `index` (a multiple of
    /// 16).
    fn stamp_word(&self, index: usize) -> &AtomicU64 {
        &self.words[index / 8]
    }

    /// The tag-and-length word of the record starting at `index`.
    fn meta(&self, index: usize) -> &AtomicU64 {
        &self.words[index / 8 + 1]
    }

    #[cfg(not(loom))]
    fn base(&self) -> *mut u8 {
        // The words are `AtomicU64`, i.e. `UnsafeCell<u64>`: writing through a
        // pointer derived from a shared reference to them is permitted.
        self.words.as_ptr().cast::<u8>().cast_mut()
    }
}

/// A bounded MPSC ring of variable-length byte records.
///
/// Share it between producers through an `Arc`; exactly one [`Consumer`]
/// exists for it (see [`Ring::take_consumer`]).
pub struct Ring {
    /// Written by producers (CAS) to claim space; read by producers. Counts
    /// every byte ever claimed, padding included.
    tail: CachePadded<AtomicU64>,
    /// Written only by the consumer, after it has read what it consumed;
    /// read by producers to compute free space.
    head: CachePadded<AtomicU64>,
    storage: Storage,
    capacity: u64,
    mask: u64,
    /// The stamp key: see the module docs.
    key: u64,
    /// Set once, by the first `take_consumer`: the ring's one consumer
    /// exists.
    consumer_taken: AtomicBool,
}

// SAFETY: all shared mutation goes through atomics or through byte ranges
// that the claim protocol hands to exactly one thread at a time (a producer
// between its claim and commit, the consumer between the Acquire load of a
// committed header and the Release store of head).
unsafe impl Sync for Ring {}
// SAFETY: the ring owns its memory; nothing in it is tied to a thread.
unsafe impl Send for Ring {}

impl Ring {
    /// Creates a ring of `capacity` bytes (a power of two, at least 64) and
    /// its one consumer handle.
    pub fn new(capacity: usize) -> Ring {
        assert!(
            capacity.is_power_of_two() && capacity >= 64,
            "ring capacity must be a power of two >= 64, got {capacity}"
        );
        Ring {
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            storage: Storage::new(capacity),
            capacity: capacity as u64,
            mask: capacity as u64 - 1,
            key: random_key(),
            consumer_taken: AtomicBool::new(false),
        }
    }

    /// The ring's one consumer: `Some` the first time, `None` ever after, so
    /// that two threads can never both read records and move `head`.
    pub fn take_consumer(self: &std::sync::Arc<Ring>) -> Option<Consumer> {
        // Relaxed: the flag guards only itself; the consumer's reads of the
        // ring synchronise through the record headers and `head`.
        if self.consumer_taken.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(Consumer {
            ring: self.clone(),
            #[cfg(loom)]
            scratch: Vec::new(),
        })
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The largest payload a single record may have: half the ring less the
    /// header, so that a record always fits once the consumer catches up,
    /// wherever the wrap falls.
    pub fn max_payload(&self) -> usize {
        (self.capacity / 2) as usize - HEADER
    }

    /// Bytes claimed and not yet consumed (an instantaneous estimate).
    pub fn used(&self) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        tail.saturating_sub(head) as usize
    }

    /// Claims space for a record of `len` payload bytes with `tag`
    /// (at most [`MAX_TAG`]). The claim must be committed (or dropped, which
    /// turns it into padding) promptly: the consumer cannot pass it until then.
    ///
    /// The claiming CAS is `SeqCst` so that a caller can pair it with a
    /// `SeqCst` load of a "closed" flag (see the pipeline's shutdown): either
    /// the closer sees this claim in `tail`, or this thread sees the flag.
    #[inline(always)]
    pub fn claim(&self, len: usize, tag: u32) -> Result<Claim<'_>, ClaimError> {
        debug_assert!(tag <= MAX_TAG);
        if len > self.max_payload() {
            return Err(ClaimError::TooLarge);
        }
        let record = align_up((HEADER + len) as u64);
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the consumer's Release store of `head` in
            // `Consumer::read`: its reads of the space we are about to reuse
            // happen-before our writes to it.
            let head = self.head.load(Ordering::Acquire);
            if head > tail {
                // Our `tail` is older than the consumer's progress: reload.
                tail = self.tail.load(Ordering::Relaxed);
                continue;
            }
            let index = tail & self.mask;
            let to_end = self.capacity - index;
            let needed = if record > to_end {
                to_end + record
            } else {
                record
            };
            if tail + needed - head > self.capacity {
                return Err(ClaimError::Full);
            }
            match self.tail.compare_exchange_weak(
                tail,
                tail + needed,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let pos = if record > to_end {
                        // Fill the rest of the buffer with one committed
                        // padding record (`to_end` is a multiple of 16, so
                        // its header fits).
                        let pad_len = (to_end - HEADER as u64) as usize;
                        self.publish(tail, PAD_TAG, pad_len);
                        tail + to_end
                    } else {
                        tail
                    };
                    return Ok(Claim {
                        ring: self,
                        index: (pos & self.mask) as usize,
                        pos,
                        len,
                        used_before: tail - head,
                        used_after: tail + needed - head,
                        committed: false,
                        #[cfg(loom)]
                        scratch: vec![0; len],
                    });
                }
                Err(current) => tail = current,
            }
        }
    }

    /// The stamp that commits the record at absolute position `pos`: a
    /// keyed mix (splitmix64's finaliser over `pos ^ key`), so that no
    /// stale word in the buffer (an earlier lap's header, or payload bytes)
    /// matches it but by a 2^-64 chance, and recorded data cannot forge it.
    #[inline]
    fn stamp(&self, pos: u64) -> u64 {
        let mut z = (pos ^ self.key).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Publishes the record at absolute position `pos`.
    #[inline]
    fn publish(&self, pos: u64, tag: u32, len: usize) {
        let index = (pos & self.mask) as usize;
        // Relaxed: the Release store of the stamp below publishes it.
        self.storage
            .meta(index)
            .store(meta_word(tag, len as u32), Ordering::Relaxed);
        // Release pairs with the consumer's Acquire load of the stamp: the
        // payload and tag-and-length writes happen-before its reads.
        self.storage
            .stamp_word(index)
            .store(self.stamp(pos), Ordering::Release);
    }
}

/// Space claimed in a ring by one producer. Write the payload through
/// [`Claim::buf`], then [`Claim::commit`]. Dropping an uncommitted claim turns
/// it into padding, so that a producer that bails out never stalls the ring.
pub struct Claim<'r> {
    ring: &'r Ring,
    index: usize,
    /// The record's absolute position (what its stamp is made of).
    pos: u64,
    len: usize,
    used_before: u64,
    used_after: u64,
    committed: bool,
    #[cfg(loom)]
    scratch: Vec<u8>,
}

impl Claim<'_> {
    /// The payload bytes to fill, exactly as long as was claimed. They hold
    /// whatever an earlier lap left there: write every one.
    #[cfg(not(loom))]
    #[inline]
    pub fn buf(&mut self) -> &mut [u8] {
        // SAFETY: [index + HEADER, index + HEADER + len) lies inside the buffer
        // (claim never lets a record cross the end) and belongs to this claim
        // alone: the CAS on `tail` gave it to us, producers never touch
        // claimed space, and the consumer does not read past our uncommitted
        // header (its stamp does not match yet). `&mut self` keeps the slice unique on our side.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ring.storage.base().add(self.index + HEADER),
                self.len,
            )
        }
    }

    /// The payload bytes to fill (loom: a scratch buffer copied on commit).
    #[cfg(loom)]
    pub fn buf(&mut self) -> &mut [u8] {
        &mut self.scratch
    }

    /// Bytes in the ring before and after this claim, for high-water checks.
    #[inline]
    pub fn fill(&self) -> (usize, usize) {
        (self.used_before as usize, self.used_after as usize)
    }

    /// Publishes the record to the consumer under `tag`.
    #[inline]
    pub fn commit(mut self, tag: u32) {
        debug_assert!(tag <= MAX_TAG);
        #[cfg(loom)]
        for (i, b) in self.scratch.iter().enumerate() {
            let cell = &self.ring.storage.bytes[self.index + HEADER + i];
            // SAFETY: this byte belongs to our claim (see `buf`).
            cell.with_mut(|p| unsafe { *p = *b });
        }
        self.committed = true;
        self.ring.publish(self.pos, tag, self.len);
    }
}

impl Drop for Claim<'_> {
    #[inline] // after a commit, the common case, one test
    fn drop(&mut self) {
        if !self.committed {
            self.ring.publish(self.pos, PAD_TAG, self.len);
        }
    }
}

/// The single consumer of a ring. Not `Clone`: whoever holds it is the only
/// thread that reads records and moves `head`.
pub struct Consumer {
    ring: std::sync::Arc<Ring>,
    #[cfg(loom)]
    scratch: Vec<u8>,
}

impl Consumer {
    /// The ring this consumer drains.
    pub fn ring(&self) -> &std::sync::Arc<Ring> {
        &self.ring
    }

    /// Position up to which producers have claimed space.
    pub fn tail(&self) -> u64 {
        self.ring.tail.load(Ordering::SeqCst)
    }

    /// Position up to which this consumer has read.
    pub fn head(&self) -> u64 {
        self.ring.head.load(Ordering::Relaxed)
    }

    /// Hands committed records to `f` in order as `(tag, payload)`, stopping
    /// at the first uncommitted one, after about `max_bytes` of records, or
    /// when `f` returns `false` (that record is then left in the ring). Frees
    /// the space read. Returns the number of records handed over.
    pub fn read(&mut self, max_bytes: usize, mut f: impl FnMut(u32, &[u8]) -> bool) -> usize {
        let ring = &*self.ring;
        let head = ring.head.load(Ordering::Relaxed);
        let mut pos = head;
        let mut records = 0;
        // Never read more than one lap (in a completely full ring the
        // record after the last one is the first one again; its stamp is
        // for the position a lap earlier, so it would stop there anyway).
        let limit = max_bytes.min(ring.capacity as usize);
        while ((pos - head) as usize) < limit {
            let index = (pos & ring.mask) as usize;
            // Acquire pairs with the Release store of the stamp in
            // `Ring::publish`.
            if ring.storage.stamp_word(index).load(Ordering::Acquire) != ring.stamp(pos) {
                break;
            }
            // Relaxed: ordered by the Acquire above.
            let word = ring.storage.meta(index).load(Ordering::Relaxed);
            let len = word as u32 as usize;
            let tag = ((word >> 32) & TAG_MASK) as u32;
            if index + HEADER + len > ring.capacity as usize {
                // Only a stale word matching the stamp by a 2^-64 chance
                // could say so (claims never cross the end): never read
                // outside the buffer on its word.
                debug_assert!(false, "a record crossing the ring's end");
                break;
            }
            if tag != PAD_TAG {
                #[cfg(not(loom))]
                // SAFETY: the stamp matched, so the producer's payload writes
                // happened-before (Acquire above), `len` is the one it wrote
                // (at most `max_payload`, inside the buffer: claims never
                // cross the end), and nobody writes the record again until
                // we move `head` past it.
                let payload = unsafe {
                    std::slice::from_raw_parts(ring.storage.base().add(index + HEADER), len)
                };
                #[cfg(loom)]
                let payload = {
                    self.scratch.clear();
                    for cell in &ring.storage.bytes[index + HEADER..index + HEADER + len] {
                        // SAFETY: as above, the byte is ours to read.
                        self.scratch.push(cell.with(|p| unsafe { *p }));
                    }
                    &self.scratch[..]
                };
                if !f(tag, payload) {
                    break;
                }
                records += 1;
            }
            pos += align_up((HEADER + len) as u64);
        }
        if pos != head {
            self.release(pos);
        }
        records
    }

    /// Publishes `to` as the new head: the space before it is free. Nothing
    /// is written to the buffer (see the module docs).
    fn release(&self, to: u64) {
        // Release pairs with the Acquire load of `head` in `Ring::claim`:
        // our reads of the records happen-before their space is reused.
        self.ring.head.store(to, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
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
}
