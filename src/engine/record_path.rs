//! The record path, the host thread's hot path: pick the thread's shard,
//! apply the ingest limits and the memory budget, claim ring space, encode
//! the record in place, commit, and wake the worker only when it needs it.
//! No allocation, no lock, no system call on the common path; every
//! refusal is counted by reason.

use std::cell::RefCell;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::producer::{thread_shard, Counts};
use super::OVERFLOW_SCOPE;
use super::{batch, Engine, Scope, Shard, AWAKE, IDLE, SCOPE_MASK, SIGNAL_SHIFT};
use crate::config::Policy;
use crate::error::RecordError;
use crate::record::{OwnedValue, Signal};
use crate::ring::ClaimError;

/// Bytes held against the memory budget by a record on its way into a
/// ring: released if the record is refused, kept once it is committed.
pub(super) struct Reservation<'a> {
    budget: Option<&'a crate::flow::MemoryBudget>,
    n: u64,
}

impl Reservation<'_> {
    #[inline]
    pub(super) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // A refused record: nobody waits for these few bytes more than for
        // the next release, so no wake-up here.
        if let Some(b) = self.budget {
            b.release(self.n);
        }
    }
}

/// Scratch space a thread encodes a record into before it knows the
/// record's size (see `Engine::record_encoded`).
const SCRATCH_BYTES: usize = 16 * 1024;

thread_local! {
    /// This thread's scratch space: empty until the thread first records.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Engine {
    /// Records what `encode` writes, in one pass: into this thread's scratch
    /// space, then copied into the ring whole. For a span that costs about
    /// a third less than sizing it first (the size pass walks every field
    /// the encoder does). A record the scratch cannot hold (over 16 KiB),
    /// or one made while the thread's locals are torn down, is sized by
    /// `len` first and written in place.
    #[inline(always)]
    pub(super) fn record_encoded(
        &self,
        scope: &Scope,
        signal: Signal,
        len: impl FnOnce() -> usize,
        encode: impl Fn(&mut [u8], bool) -> Option<usize>,
    ) -> Result<(), RecordError> {
        // `encode(buf, scratch)` makes its writer itself (see
        // `wire::write_into`) and says how much it wrote: called from two
        // places it is not inlined, and a writer handed to it, by reference
        // or by value, would live in memory (see `wire::overflowed`).
        let once = SCRATCH.try_with(|cell| {
            // Borrowed already: a record made while this thread's record
            // waits for room (a hook, a signal handler); it takes the
            // two-pass path.
            let mut scratch = cell.try_borrow_mut().ok()?;
            if scratch.is_empty() {
                scratch.resize(SCRATCH_BYTES, 0);
            }
            let n = encode(&mut scratch, true)?;
            Some(self.record_with(scope, signal, n, |buf| buf.copy_from_slice(&scratch[..n])))
        });
        if let Ok(Some(result)) = once {
            return result;
        }
        self.record_with(scope, signal, len(), |buf| {
            let n = encode(buf, false);
            debug_assert_eq!(n, Some(buf.len()), "the size pass and the encoder disagree");
        })
    }

    /// Counts a record of `signal` offered and refused before the record
    /// path (invalid input), in the calling thread's shard; hands `e` back.
    #[cold]
    pub(super) fn refuse_offered(&self, signal: Signal, e: RecordError) -> RecordError {
        let c = &self.shards[thread_shard(self.shards.len())].counters;
        c.offer(signal);
        c.refuse(e)
    }

    /// The record path shared by every signal: checks, limits, the memory
    /// budget, the ring claim, the encode in place and the commit.
    #[inline(always)]
    pub(super) fn record_with(
        &self,
        scope: &Scope,
        signal: Signal,
        len: usize,
        encode: impl FnOnce(&mut [u8]),
    ) -> Result<(), RecordError> {
        self.record_flagged::<true>(scope, signal, len, 0, encode)
    }

    /// The record path with tag `flags` (a receipt's records carry
    /// `RECEIPT_BIT`). `PARK = false` is the async path: where `Block`
    /// would park the thread, the record is neither counted offered nor
    /// refused and the error says what it waits for (`Full`, `Memory`,
    /// `SystemMemory`); the caller awaits and tries again.
    #[inline(always)]
    pub(super) fn record_flagged<const PARK: bool>(
        &self,
        scope: &Scope,
        signal: Signal,
        len: usize,
        flags: u32,
        encode: impl FnOnce(&mut [u8]),
    ) -> Result<(), RecordError> {
        let inner = self;
        let (shard_index, own) = inner.producers.current(inner.shards.len());
        let shard = &inner.shards[shard_index];
        let counts = Counts {
            own,
            shard: &shard.counters,
        };
        counts.offer(signal);
        if scope.pipeline != inner.id
            || scope.id >= inner.scope_count.load(Ordering::Acquire)
            || scope.id > SCOPE_MASK
        {
            return Err(counts.refuse(RecordError::InvalidScope));
        }
        if len > inner.max_record {
            return Err(counts.refuse(RecordError::TooLarge));
        }
        if !inner.admit(len, scope.id) {
            return Err(counts.refuse(RecordError::RateLimited));
        }
        let tag = scope.id | (signal.index() as u32) << SIGNAL_SHIFT | flags;
        let mut deadline = None;
        if let Some(sys) = &inner.system_memory {
            if !PARK && sys.over() && inner.blocks() {
                counts.unoffer(signal);
                return Err(RecordError::SystemMemory);
            }
            inner.under_system_memory(sys, counts, &mut deadline)?;
        }
        // Held until the record is in the ring; dropped (released) on every
        // refusal below.
        let reservation = inner.reserve::<PARK>(len, counts, signal, &mut deadline)?;
        let mut encode = Some(encode);
        loop {
            match shard.ring.claim(len, tag) {
                Ok(mut claim) => {
                    // SeqCst pairs with the SeqCst store of `closed` and load
                    // of the ring tail in `shutdown`: either shutdown sees our
                    // claim and drains it, or we see `closed` and back out.
                    if inner.closed.load(Ordering::SeqCst) {
                        drop(claim);
                        return Err(counts.refuse(RecordError::Shutdown));
                    }
                    // Counted accepted before it is committed, hence
                    // before any worker can drain it (see `stats::snapshot`).
                    let n = counts.accept(signal);
                    if let Some(f) = encode.take() {
                        f(claim.buf());
                    }
                    let (before, after) = claim.fill();
                    claim.commit(tag);
                    // The worker releases it when the record leaves.
                    reservation.keep();
                    if n % 64 == 0 {
                        inner.sample(shard);
                    }
                    inner.maybe_wake(shard, before, after);
                    return Ok(());
                }
                Err(ClaimError::TooLarge) => {
                    return Err(counts.refuse(RecordError::TooLarge));
                }
                Err(ClaimError::Full) => {
                    if inner.closed.load(Ordering::Relaxed) {
                        return Err(counts.refuse(RecordError::Shutdown));
                    }
                    // Block waits until one deadline, set at the first full
                    // ring; DropNewest refuses at once.
                    let Policy::Block { max_wait } = inner.config.policy else {
                        return Err(counts.refuse(RecordError::Full));
                    };
                    if !PARK {
                        counts.unoffer(signal);
                        return Err(RecordError::Full);
                    }
                    let until =
                        *deadline.get_or_insert_with(|| crate::clock::deadline_after(max_wait));
                    if Instant::now() >= until {
                        return Err(counts.refuse(RecordError::Full));
                    }
                    inner.wait_for_space(shard, until);
                }
            }
        }
    }

    pub(super) fn scope(
        &self,
        name: &str,
        version: &str,
        attributes: &[(String, OwnedValue)],
    ) -> Scope {
        let encoded = Bytes::from(batch::scope_field(name, version, attributes));
        let limit = self.config.max_scopes;
        // A known scope (the common case, and every new one once the table
        // is full) takes the read lock only.
        let found = self.scopes.read().find(&encoded, limit);
        let (id, overflowed) = found.unwrap_or_else(|| {
            let mut scopes = self.scopes.write();
            let overflow = || Bytes::from(batch::scope_field(OVERFLOW_SCOPE, crate::VERSION, &[]));
            let answer = scopes.register(encoded, limit, overflow);
            self.scope_count
                .store(scopes.len() as u32, Ordering::Release);
            answer
        });
        if overflowed {
            self.scope_overflow();
        }
        Scope {
            id,
            pipeline: self.id,
        }
    }

    /// otlpflow's own scope (its self-metrics'), registered outside
    /// `max_scopes` (see `ScopeTable::register_own`).
    pub(super) fn own_scope(&self) -> Scope {
        let encoded = Bytes::from(batch::scope_field("otlpflow", crate::VERSION, &[]));
        let mut scopes = self.scopes.write();
        let id = scopes.register_own(encoded);
        self.scope_count
            .store(scopes.len() as u32, Ordering::Release);
        Scope {
            id,
            pipeline: self.id,
        }
    }

    /// Counts a scope answered with the overflow scope; the first one is
    /// also the last error, naming the bound (not the scope: a host may
    /// put anything in a name).
    #[cold]
    fn scope_overflow(&self) {
        if self.scopes_overflowed.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.last_error.lock() = Some(format!(
                "more than max_scopes ({}) scopes: later new scopes are recorded as {OVERFLOW_SCOPE}",
                self.config.max_scopes
            ));
        }
    }

    /// Waits (under `Block`, up to the record's deadline) while the
    /// system's memory use is over its limit; refuses with `SystemMemory`
    /// otherwise or at the deadline.
    #[cold]
    fn under_system_memory(
        &self,
        sys: &crate::flow::SystemMemory,
        counts: Counts<'_>,
        deadline: &mut Option<Instant>,
    ) -> Result<(), RecordError> {
        while sys.over() {
            let Policy::Block { max_wait } = self.config.policy else {
                return Err(counts.refuse(RecordError::SystemMemory));
            };
            let until = *deadline.get_or_insert_with(|| crate::clock::deadline_after(max_wait));
            if Instant::now() >= until {
                return Err(counts.refuse(RecordError::SystemMemory));
            }
            if self.closed.load(Ordering::Relaxed) {
                return Err(counts.refuse(RecordError::Shutdown));
            }
            // The sampler notifies when the pressure ends; the timed wait
            // bounds a missed notification.
            let mut guard = self.budget_lock.lock();
            let until = until.min(Instant::now() + Duration::from_millis(20));
            self.budget_cv.wait_until(&mut guard, until);
        }
        Ok(())
    }

    /// Whether the policy is `Block` (producers wait rather than drop).
    pub(super) fn blocks(&self) -> bool {
        matches!(self.config.policy, Policy::Block { .. })
    }

    /// Whether the system's memory use is over its limit (workers hold
    /// their concurrency and batch size then).
    pub(super) fn under_memory_pressure(&self) -> bool {
        self.system_memory.as_ref().is_some_and(|s| s.over())
    }

    /// Reserves a record's bytes against the memory budget, if there is one.
    /// Over it, `Block` parks the producer until memory is released or the
    /// deadline (shared with the ring's wait) passes; `DropNewest` refuses.
    #[inline]
    pub(super) fn reserve<'a, const PARK: bool>(
        &'a self,
        len: usize,
        counts: Counts<'_>,
        signal: Signal,
        deadline: &mut Option<Instant>,
    ) -> Result<Reservation<'a>, RecordError> {
        let Some(budget) = &self.budget else {
            return Ok(Reservation { budget: None, n: 0 });
        };
        let n = len as u64;
        while !budget.try_reserve(n) {
            let Policy::Block { max_wait } = self.config.policy else {
                return Err(counts.refuse(RecordError::Memory));
            };
            if !PARK {
                counts.unoffer(signal);
                return Err(RecordError::Memory);
            }
            let until = *deadline.get_or_insert_with(|| crate::clock::deadline_after(max_wait));
            if Instant::now() >= until {
                return Err(counts.refuse(RecordError::Memory));
            }
            if self.closed.load(Ordering::Relaxed) {
                return Err(counts.refuse(RecordError::Shutdown));
            }
            self.wait_for_memory(until);
        }
        Ok(Reservation {
            budget: Some(budget),
            n,
        })
    }

    #[cold]
    pub(super) fn wait_for_memory(&self, until: Instant) {
        // Make sure every worker is draining (a lingering batch holds memory
        // too) before we sleep.
        for w in self.workers.iter() {
            if w.mode.swap(AWAKE, Ordering::SeqCst) != AWAKE {
                w.notify.notify_one();
            }
        }
        let mut guard = self.budget_lock.lock();
        // SeqCst pairs with the fence in `release_memory`: either the
        // releaser sees us waiting, or the caller's retry sees the memory.
        self.budget_waiters.fetch_add(1, Ordering::SeqCst);
        // A short timed wait bounds the cost of a missed wake-up.
        let until = until.min(Instant::now() + Duration::from_millis(5));
        self.budget_cv.wait_until(&mut guard, until);
        self.budget_waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Offers this record's commit time as the shard's end-to-end latency
    /// sample (kept only if none is waiting).
    #[cold]
    pub(super) fn sample(&self, shard: &Shard) {
        if shard.counters.sample_ns.load(Ordering::Relaxed) == 0 {
            let now = self.epoch.elapsed().as_nanos() as u64;
            // Release: the worker's Acquire swap sees a sample only after
            // the record's commit, which came before it.
            shard
                .counters
                .sample_ns
                .store(now.max(1), Ordering::Release);
        }
    }

    /// Returns bytes to the budget and wakes producers parked on it.
    pub(super) fn release_memory(&self, n: u64) {
        let Some(b) = &self.budget else { return };
        b.release(n);
        fence(Ordering::SeqCst);
        if self.budget_waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.budget_lock.lock();
            self.budget_cv.notify_all();
        }
        self.wake_async();
    }

    /// Applies the ingest token buckets, if configured. A record refused by
    /// the byte bucket after the record bucket admitted it has used a record
    /// token: that is the conservative side of the limit.
    #[inline(always)]
    pub(super) fn admit(&self, len: usize, scope: u32) -> bool {
        if !self.ingest_limited {
            return true;
        }
        self.admit_limited(len, scope)
    }

    #[inline(never)]
    fn admit_limited(&self, len: usize, scope: u32) -> bool {
        if let Some(buckets) = &self.scope_buckets {
            let i = (scope as usize).min(buckets.len() - 1);
            if !buckets[i].try_acquire(1) {
                return false;
            }
        }
        if let Some(w) = &self.window {
            if !w.try_acquire(1) {
                return false;
            }
        }
        if let Some(b) = &self.record_bucket {
            if !b.try_acquire(1) {
                return false;
            }
        }
        match &self.byte_bucket {
            Some(b) => b.try_acquire(len as u64),
            None => true,
        }
    }

    /// Wakes the shard's worker if it sleeps idle, or lingers and the ring
    /// just crossed its high-water mark. Called after every commit; costs one
    /// load of a line that changes only when the worker sleeps or wakes.
    #[inline]
    pub(super) fn maybe_wake(&self, shard: &Shard, before: usize, after: usize) {
        let w = &self.workers[shard.worker];
        // SeqCst pairs with the worker's SeqCst store of `mode` before its
        // final check of the rings (`worker::sleep`): either it sees our
        // record, or we see it asleep.
        let mode = w.mode.load(Ordering::SeqCst);
        if mode == AWAKE {
            return;
        }
        let crossed = before < shard.high_water && after >= shard.high_water;
        if (mode == IDLE || crossed) && w.mode.swap(AWAKE, Ordering::SeqCst) != AWAKE {
            w.notify.notify_one();
        }
    }

    /// Wakes async senders waiting for room, if there are any. Callers
    /// have made room and then issued a SeqCst fence, which pairs with the
    /// waiter's SeqCst increment of `async_waiters` before its last try:
    /// either we see the waiter, or its try sees the room.
    #[inline]
    pub(super) fn wake_async(&self) {
        if self.async_waiters.load(Ordering::Relaxed) > 0 {
            self.async_room.notify_waiters();
        }
    }

    pub(super) fn wake_all(&self) {
        for w in self.workers.iter() {
            w.mode.store(AWAKE, Ordering::SeqCst);
            w.notify.notify_one();
        }
    }

    /// Parks the producer until the worker frees space or `deadline` passes.
    #[cold]
    pub(super) fn wait_for_space(&self, shard: &Shard, deadline: Instant) {
        // Make sure the worker is draining before we sleep.
        let w = &self.workers[shard.worker];
        if w.mode.swap(AWAKE, Ordering::SeqCst) != AWAKE {
            w.notify.notify_one();
        }
        let mut guard = shard.lock.lock();
        // SeqCst pairs with the worker's fence after it moves `head`: either
        // it sees us waiting, or our re-check below sees the space.
        shard.waiters.fetch_add(1, Ordering::SeqCst);
        // Hysteresis: once a ring is full, producers wait until the worker
        // has drained it below the low-water mark, so that a full ring costs
        // one wake-up per half ring rather than one per record.
        if shard.ring.used() > shard.low_water && !self.closed.load(Ordering::SeqCst) {
            // A short timed wait bounds the cost of any missed wake-up.
            let until = deadline.min(Instant::now() + Duration::from_millis(5));
            shard.space.wait_until(&mut guard, until);
            shard.waiters.fetch_sub(1, Ordering::Relaxed);
        } else {
            // Below low water yet the claim failed: the record needs the
            // wrap's padding too. Let the worker run rather than spin.
            shard.waiters.fetch_sub(1, Ordering::Relaxed);
            drop(guard);
            std::thread::yield_now();
        }
    }
}
