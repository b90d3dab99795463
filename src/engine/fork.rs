//! Fork safety: a process that forks (gunicorn, uwsgi, a prefork C server)
//! keeps working in both parent and child.
//!
//! After `fork()` only the forking thread exists in the child: the worker
//! threads are gone, a ring may hold a record some other thread was halfway
//! through writing, and a lock may be held by a thread that no longer exists.
//! The protocol, as with `pthread_atfork`:
//!
//! - [`prepare`] (before the fork, in the parent) takes the registry lock and
//!   every pipeline's scope lock, so the child finds them consistent;
//! - [`parent`] releases them in the parent, which carries on untouched;
//! - [`child`] releases them in the child and bumps the fork generation. It
//!   only does atomic operations, so it is safe in an atfork child handler.
//!
//! The first use of a pipeline in the child then notices the new generation
//! and starts a fresh engine with the same configuration and scopes, carrying
//! the counters over; whatever the parent had in flight at the fork is the
//! parent's to send, so the child counts it as `failed_fork`. The hooks are
//! registered with `pthread_atfork` when the first pipeline starts; calling
//! them again by hand (the C hooks, Python's `os.register_at_fork`) is
//! harmless.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::PipelineCore;

/// Bumped in every fork child.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Set between `prepare` and `parent`/`child`.
static PREPARED: AtomicBool = AtomicBool::new(false);
/// Every pipeline started in this process.
static REGISTRY: Mutex<Vec<Weak<PipelineCore>>> = Mutex::new(Vec::new());
/// The pipelines whose scope locks `prepare` holds.
static HELD: Mutex<Vec<Arc<PipelineCore>>> = Mutex::new(Vec::new());
static ATFORK: Once = Once::new();
/// What a fork child inherited from its parent and must not drop: engines
/// whose workers did not survive the fork, and their thread handles.
/// Keeping them here (rather than forgetting them) documents that they are
/// retained on purpose, and keeps leak checkers quiet about them.
static INHERITED: Mutex<Vec<Box<dyn std::any::Any + Send>>> = Mutex::new(Vec::new());

/// The current fork generation: 0 in the original process, +1 per fork.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

pub(super) fn register(core: &Arc<PipelineCore>) {
    ATFORK.call_once(|| {
        // SAFETY: the three handlers are `extern "C" fn()` with static
        // lifetime; pthread_atfork only stores them.
        unsafe {
            libc::pthread_atfork(Some(prepare_c), Some(parent_c), Some(child_c));
        }
    });
    let mut reg = REGISTRY.lock();
    reg.retain(|w| w.strong_count() > 0);
    reg.push(Arc::downgrade(core));
}

/// Call just before `fork()`. Blocks while another thread registers a
/// scope; otherwise cheap.
pub fn prepare() {
    if PREPARED.swap(true, Ordering::AcqRel) {
        return;
    }
    let reg = REGISTRY.lock();
    let live: Vec<Arc<PipelineCore>> = reg.iter().filter_map(Weak::upgrade).collect();
    for s in &live {
        std::mem::forget(s.engine.get().scopes.write());
    }
    // Kept until `release`: the registry stays locked across the fork.
    std::mem::forget(reg);
    *HELD.lock() = live;
}

/// Call in the parent just after `fork()`.
pub fn parent() {
    release();
}

/// Call in the child just after `fork()`. Async-signal-safe.
pub fn child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    release();
}

fn release() {
    if !PREPARED.load(Ordering::Acquire) {
        return;
    }
    let held = HELD.lock();
    for s in held.iter() {
        // SAFETY: `prepare` write-locked this scope lock and forgot the
        // guard; this thread (or its copy in the child) still owns it.
        unsafe { s.engine.get().scopes.force_unlock_write() };
    }
    drop(held);
    // SAFETY: `prepare` locked the registry and forgot the guard.
    unsafe { REGISTRY.force_unlock() };
    PREPARED.store(false, Ordering::Release);
}

extern "C" fn prepare_c() {
    prepare();
}
extern "C" fn parent_c() {
    parent();
}
extern "C" fn child_c() {
    child();
}

/// Keeps something a fork child inherited for the life of the process.
pub(super) fn retain(inherited: Box<dyn std::any::Any + Send>) {
    INHERITED.lock().push(inherited);
}

/// Reads a table (scopes, instruments) of an engine being replaced in a
/// fork child.
pub(super) fn read_inherited<T: Clone>(lock: &RwLock<T>) -> T {
    if let Some(g) = lock.try_read_for(Duration::from_millis(50)) {
        return g.clone();
    }
    // The fork bypassed `prepare` (a raw clone, say) while another thread
    // held the lock: that thread does not exist here, so nothing runs
    // concurrently with this read; the table may only lack its last entry.
    // SAFETY: single-threaded in the child as far as this lock is concerned.
    unsafe { (*lock.data_ptr()).clone() }
}

/// The engine a pipeline runs, replaceable once per fork generation.
///
/// Readers get a plain `&T` with one Acquire load and no reference count:
/// the hot path pays nothing for fork safety. The price is that an engine
/// replaced in a fork child is never freed (it is kept with [`retain`] for
/// the life of the process), so a reference handed out before the swap
/// stays valid after it. This type holds the one `Arc::into_raw` pointer
/// of the crate; everything else uses it safely.
pub(super) struct EngineSlot<T: Send + Sync + 'static> {
    /// From `Arc::into_raw`; this slot owns one strong count of it.
    current: AtomicPtr<T>,
}

impl<T: Send + Sync + 'static> EngineSlot<T> {
    pub(super) fn new(engine: Arc<T>) -> EngineSlot<T> {
        EngineSlot {
            current: AtomicPtr::new(Arc::into_raw(engine).cast_mut()),
        }
    }

    /// The current engine.
    #[inline]
    pub(super) fn get(&self) -> &T {
        // SAFETY: `current` always holds a pointer from `Arc::into_raw` whose
        // strong count this slot owns. It is released only by `Drop` (when
        // `&self` can no longer be borrowed), and an engine replaced by
        // `replace` is retained forever, so the reference outlives any
        // swap. Acquire pairs with the AcqRel swap in `replace`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// A counted handle on the current engine (for a thread of its own).
    pub(super) fn get_arc(&self) -> Arc<T> {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: as in `get`, `p` is a live `Arc::into_raw` pointer whose
        // count we hold; we add one for the returned `Arc`.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Installs a new engine. The old one is retained for the life of the
    /// process (never dropped: its locks may be in any state after a fork,
    /// and references to it may be live).
    pub(super) fn replace(&self, engine: Arc<T>) {
        // AcqRel: Release publishes the new engine to `get`'s Acquire load;
        // Acquire makes the old one's contents ours to retain.
        let old = self
            .current
            .swap(Arc::into_raw(engine).cast_mut(), Ordering::AcqRel);
        // SAFETY: `old` came from `Arc::into_raw` and this slot owned its
        // count, which moves into the `Arc` we retain.
        retain(Box::new(unsafe { Arc::from_raw(old) }));
    }

    /// Keeps the current engine alive for the life of the process even
    /// after this slot is dropped (a fork child dropping a pipeline whose
    /// engine belongs to the parent).
    pub(super) fn retain_current(&self) {
        retain(Box::new(self.get_arc()));
    }
}

impl<T: Send + Sync + 'static> Drop for EngineSlot<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Arc::into_raw` and this slot owns
        // its count; `&mut self` means no reference from `get` is live.
        drop(unsafe { Arc::from_raw(*self.current.get_mut()) });
    }
}
