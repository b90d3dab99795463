//! Each recording thread's own place in an engine: its shard and its
//! counters, found through one thread-local word pair on the hot path.
//!
//! A record is counted twice (offered, accepted). Counted in the shard's
//! counters, shared by every thread on the shard, each count is a locked
//! add; counted in counters only this thread writes, it is a load and a
//! store. An engine keeps every thread's counters (`Producers`) so that
//! its snapshots see them; a thread keeps a reference to the ones it
//! writes (`Held`) and gives them back when it exits, for the next new
//! thread to continue. A thread recording while its thread-locals are torn
//! down falls back to the shard's shared counters.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::error::RecordError;
use crate::record::Signal;
use crate::stats::{ShardCounters, ThreadCounters};

/// One thread's counters for one engine.
pub(super) struct Slot {
    counters: CachePadded<ThreadCounters>,
    /// Whether a live thread writes `counters`. Cleared (Release) by the
    /// thread's exit, taken (Acquire) by the next owner, so that the new
    /// owner's first load sees the old owner's last store.
    owned: AtomicBool,
    /// The `Producers::key` of the engine this slot counts for.
    key: u64,
}

/// An engine's producer slots, one per thread that has recorded into it
/// (reused after a thread exits, so their number is the peak of threads
/// recording at once, not of threads ever).
pub(super) struct Producers {
    /// Unique per engine for the life of the process (a fork child's engine
    /// keeps its pipeline's id but gets a new key).
    key: u64,
    slots: Mutex<Vec<Arc<Slot>>>,
}

/// The next engine's key; 0 is never handed out (`CURRENT`'s empty value).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// This thread's shard hint: a number handed out in turn to threads as
/// they first record. A thread keeps its shard so that its records stay in
/// order and its cache lines warm. Not taken from the CPU the thread first
/// ran on: two threads starting together on one CPU then shared one shard
/// (and one worker) for good while another stayed idle, a third of the rate
/// lost in about one `demo` run in three.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// The last engine this thread recorded into: its key, this thread's slot
/// in it, and this thread's shard there.
#[derive(Clone, Copy)]
struct Current {
    key: u64,
    slot: *const Slot,
    shard: usize,
}

const NONE: Current = Current {
    key: 0,
    slot: std::ptr::null(),
    shard: 0,
};

/// The slots this thread holds, returned to their engines when it exits.
struct Held(Vec<Arc<Slot>>);

impl Drop for Held {
    fn drop(&mut self) {
        // Nothing may use a slot pointer once the Arcs below are gone: a
        // record made later in this thread's teardown takes the slow path,
        // finds `HELD` gone, and counts in its shard.
        let _ = CURRENT.try_with(|c| c.set(NONE));
        for s in &self.0 {
            // Release pairs with the Acquire of the next owner's take.
            s.owned.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    /// Needs no destructor, so it can be read at any point of the thread's
    /// life, its teardown included.
    static CURRENT: Cell<Current> = const { Cell::new(NONE) };
    static HELD: RefCell<Held> = const { RefCell::new(Held(Vec::new())) };
    static SHARD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard among `n`.
pub(super) fn thread_shard(n: usize) -> usize {
    let hint = SHARD_HINT
        .try_with(|h| {
            let mut v = h.get();
            if v == usize::MAX {
                // Relaxed: only distinctness matters, no other memory is
                // published through it.
                v = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
                h.set(v);
            }
            v
        })
        .unwrap_or(0);
    hint % n
}

impl Producers {
    pub(super) fn new() -> Producers {
        Producers {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            slots: Mutex::new(Vec::new()),
        }
    }

    /// The calling thread's shard among `shards` and its own counters in
    /// this engine, or `None` while the thread is being torn down (count in
    /// the shard then).
    #[inline]
    pub(super) fn current(&self, shards: usize) -> (usize, Option<&ThreadCounters>) {
        let c = CURRENT.try_with(Cell::get).unwrap_or(NONE);
        if c.key == self.key {
            // SAFETY: `CURRENT` holds this engine's key only while `HELD`
            // holds an Arc of `slot` (set together in `register`; `Held`'s
            // drop clears `CURRENT` before it lets go), and `register`
            // drops a held slot only once its engine is gone, which `&self`
            // rules out for the slot of this engine. So the slot outlives
            // the borrow of `self`.
            let slot = unsafe { &*c.slot };
            return (c.shard, Some(&*slot.counters));
        }
        self.register(shards)
    }

    #[cold]
    #[inline(never)]
    fn register(&self, shards: usize) -> (usize, Option<&ThreadCounters>) {
        let shard = thread_shard(shards);
        let slot = HELD.try_with(|held| {
            let Ok(mut held) = held.try_borrow_mut() else {
                return None;
            };
            // Slots of engines that are gone: only this thread holds them.
            held.0.retain(|s| Arc::strong_count(s) > 1);
            let slot = match held.0.iter().find(|s| s.key == self.key) {
                Some(s) => s.clone(),
                None => {
                    let s = self.take();
                    held.0.push(s.clone());
                    s
                }
            };
            let ptr = Arc::as_ptr(&slot);
            let _ = CURRENT.try_with(|c| {
                c.set(Current {
                    key: self.key,
                    slot: ptr,
                    shard,
                })
            });
            Some(ptr)
        });
        match slot {
            // SAFETY: `HELD` (this thread's) keeps an Arc of the slot, and
            // the engine's `slots` another for as long as `self` lives; see
            // `current`.
            Ok(Some(ptr)) => (shard, Some(unsafe { &*(*ptr).counters })),
            _ => (shard, None),
        }
    }

    /// A slot no live thread writes, or a new one; owned by the caller.
    fn take(&self) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        for s in slots.iter() {
            // Acquire pairs with the Release in `Held::drop`: the last
            // owner's counts are seen before this thread adds to them.
            if s.owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return s.clone();
            }
        }
        let s = Arc::new(Slot {
            counters: CachePadded::new(ThreadCounters::default()),
            owned: AtomicBool::new(true),
            key: self.key,
        });
        slots.push(s.clone());
        s
    }

    /// Calls `f` with every slot's counters (for a snapshot).
    pub(super) fn with_all<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &ThreadCounters>) -> R,
    ) -> R {
        let slots = self.slots.lock();
        f(&mut slots.iter().map(|s| &*s.counters))
    }
}

/// Where the calling thread counts a record: in its own counters, or in
/// its shard's while its thread-locals are torn down. Refusals are rare
/// and always go to the shard's.
#[derive(Clone, Copy)]
pub(super) struct Counts<'a> {
    pub(super) own: Option<&'a ThreadCounters>,
    pub(super) shard: &'a ShardCounters,
}

impl Counts<'_> {
    #[inline]
    pub(super) fn offer(self, signal: Signal) {
        match self.own {
            Some(t) => t.offer(signal),
            None => self.shard.offer(signal),
        }
    }

    #[cold]
    pub(super) fn unoffer(self, signal: Signal) {
        match self.own {
            Some(t) => t.unoffer(signal),
            None => self.shard.unoffer(signal),
        }
    }

    #[inline]
    pub(super) fn accept(self, signal: Signal) -> u64 {
        match self.own {
            Some(t) => t.accept(signal),
            None => self.shard.accept(signal),
        }
    }

    #[cold]
    pub(super) fn refuse(self, e: RecordError) -> RecordError {
        self.shard.refuse(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_exits_hands_its_counters_to_the_next() {
        let p = Arc::new(Producers::new());
        for round in 0..4u64 {
            let p2 = p.clone();
            std::thread::spawn(move || {
                let (_, own) = p2.current(4);
                let own = own.expect("a live thread has counters of its own");
                own.offer(Signal::Traces);
                own.accept(Signal::Traces);
                // The same slot on the fast path.
                let (_, again) = p2.current(4);
                assert!(std::ptr::eq(own, again.unwrap()));
            })
            .join()
            .unwrap();
            let slots = p.slots.lock();
            assert_eq!(slots.len(), 1, "round {round}: the slot is reused");
            let c = &slots[0].counters.signals[Signal::Traces];
            assert_eq!(c.accepted.load(Ordering::Relaxed), round + 1);
        }
    }

    #[test]
    fn threads_at_once_get_counters_each_and_engines_apart() {
        let a = Arc::new(Producers::new());
        let b = Arc::new(Producers::new());
        // All three hold their slots at once.
        let together = Arc::new(std::sync::Barrier::new(3));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (a, b, together) = (a.clone(), b.clone(), together.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        a.current(2).1.unwrap().offer(Signal::Logs);
                        b.current(2).1.unwrap().offer(Signal::Logs);
                        b.current(2).1.unwrap().offer(Signal::Logs);
                    }
                    together.wait();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let sum = |p: &Producers| {
            p.with_all(|all| {
                all.map(|c| c.signals[Signal::Logs].offered.load(Ordering::Relaxed))
                    .sum::<u64>()
            })
        };
        assert_eq!(sum(&a), 300);
        assert_eq!(sum(&b), 600);
        assert_eq!(a.slots.lock().len(), 3);
    }

    #[test]
    fn a_gone_engines_slot_is_let_go_at_the_next_registration() {
        let x = Producers::new();
        let _ = x.current(2);
        let weak = Arc::downgrade(&x.slots.lock()[0]);
        drop(x);
        // This thread still holds it (and `CURRENT` points at it).
        assert!(weak.upgrade().is_some());
        let y = Producers::new();
        let _ = y.current(2);
        assert!(weak.upgrade().is_none());
    }
}
