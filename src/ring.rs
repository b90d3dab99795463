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
//! cache. Asked to (`Consumer::evict_read_lines`), it also evicts the
//! lines it has read from every cache (`crate::cache_line`), so that
//! producers write the next lap into lines no other core holds a copy of.
//!
//! Layout: `capacity` bytes (a power of two) starting on a cache line,
//! records aligned to 16 bytes.
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

#[cfg(not(loom))]
use crate::cache_line::{Evict, LINE};

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
/// record, and the ring is one allocation aligned to a cache line (so that
/// position multiples of [`LINE`] start lines: see
/// `Consumer::evict_lines_before`); under loom the headers and bytes are
/// separate, tracked arrays.
#[cfg(not(loom))]
struct Storage {
    /// `capacity` bytes, zeroed at the start, viewed as `len` atomic words.
    words: std::ptr::NonNull<AtomicU64>,
    /// A power of two: `capacity / 8`.
    len: usize,
}

#[cfg(loom)]
struct Storage {
    words: Box<[AtomicU64]>,
    bytes: Box<[crate::sync::UnsafeCell<u8>]>,
}

#[cfg(not(loom))]
impl Storage {
    fn layout(capacity: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(capacity, LINE)
            .expect("a power of two >= 64 is a valid size")
    }

    fn new(capacity: usize) -> Self {
        let layout = Self::layout(capacity);
        // SAFETY: the layout's size is at least 64 (checked by `Ring::new`).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let words = std::ptr::NonNull::new(raw.cast::<AtomicU64>())
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Storage {
            words,
            len: capacity / 8,
        }
    }

    /// The word at byte `index` of the ring (masked into the ring, so any
    /// index is in bounds).
    #[inline]
    fn word(&self, index: usize) -> &AtomicU64 {
        // SAFETY: `len` is a power of two, so the masked index is below it:
        // inside the allocation, which lives as long as `self`. All-zero
        // bytes are a valid `AtomicU64`, and every access to the words is
        // atomic or through `base()` under the claim protocol.
        unsafe { &*self.words.as_ptr().add((index / 8) & (self.len - 1)) }
    }

    /// The stamp word of the record starting at `index` (a multiple of
    /// 16).
    fn stamp_word(&self, index: usize) -> &AtomicU64 {
        self.word(index)
    }

    /// The tag-and-length word of the record starting at `index`.
    fn meta(&self, index: usize) -> &AtomicU64 {
        self.word(index + 8)
    }

    /// Byte 0 of the ring, on a cache-line boundary.
    fn base(&self) -> *mut u8 {
        // The words are `AtomicU64`, i.e. `UnsafeCell<u64>`: writing through
        // a pointer to them is permitted.
        self.words.as_ptr().cast::<u8>()
    }
}

#[cfg(not(loom))]
impl Drop for Storage {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout (`len * 8` is the
        // capacity), and freed once.
        unsafe { std::alloc::dealloc(self.base(), Self::layout(self.len * 8)) }
    }
}

#[cfg(loom)]
impl Storage {
    fn new(capacity: usize) -> Self {
        Storage {
            words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(),
            bytes: (0..capacity)
                .map(|_| crate::sync::UnsafeCell::new(0u8))
                .collect(),
        }
    }

    fn stamp_word(&self, index: usize) -> &AtomicU64 {
        &self.words[index / 8]
    }

    fn meta(&self, index: usize) -> &AtomicU64 {
        &self.words[index / 8 + 1]
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
            #[cfg(not(loom))]
            evict: Evict::Off,
            #[cfg(not(loom))]
            evicted: self.head.load(Ordering::Relaxed),
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
    /// How this CPU evicts the lines of records read (see
    /// `evict_lines_before`).
    #[cfg(not(loom))]
    evict: Evict,
    /// Position up to which the lines read have been evicted: a multiple
    /// of [`LINE`], at most `head` (left behind while eviction is off).
    #[cfg(not(loom))]
    evicted: u64,
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

    /// From now on, evict the lines of the records read from every cache
    /// (where the CPU can; off by default: see `crate::cache_line` for what
    /// it costs and buys).
    pub fn evict_read_lines(&mut self) {
        #[cfg(not(loom))]
        {
            self.evict = Evict::detect();
        }
    }

    /// Publishes `to` as the new head: the space before it is free. Nothing
    /// is written to the buffer (see the module docs).
    fn release(&mut self, to: u64) {
        #[cfg(not(loom))]
        self.evict_lines_before(to);
        // Release pairs with the Acquire load of `head` in `Ring::claim`:
        // our reads of the records happen-before their space is reused.
        self.ring.head.store(to, Ordering::Release);
    }

    /// Evicts from every cache the lines wholly before `to` that were read
    /// since the last call, so that producers write the next lap into
    /// lines no other core holds (see `crate::cache_line`). Done before
    /// `head` moves: until then no producer writes these lines, so none is
    /// evicted from under a producer's stores. The line `to` falls in is
    /// left for the next call: its rest may not be written yet.
    #[cfg(not(loom))]
    fn evict_lines_before(&mut self, to: u64) {
        if self.evict == Evict::Off {
            return;
        }
        let ring = &*self.ring;
        let end = to & !(LINE as u64 - 1);
        // Never more than a lap: older lines have been written again since
        // (or eviction was off when they were read).
        let from = self.evicted.max(end.saturating_sub(ring.capacity));
        self.evicted = end;
        if from >= end {
            return;
        }
        // At most two runs of lines: up to the buffer's end, then from its
        // start.
        let start = (from & ring.mask) as usize;
        let len = (end - from) as usize;
        let first = len.min(ring.capacity as usize - start);
        // SAFETY: both runs lie inside the ring's `capacity` bytes (`first`
        // stops at the end, the rest is shorter than a lap), which the
        // consumer's `Arc` keeps allocated; eviction does not change them
        // (see `Evict::lines`).
        unsafe {
            self.evict.lines(ring.storage.base().add(start), first);
            self.evict.lines(ring.storage.base(), len - first);
        }
    }
}

#[cfg(all(test, not(loom)))]
#[path = "ring_tests.rs"]
mod tests;
