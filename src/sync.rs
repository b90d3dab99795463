//! The one place the lock-free parts get their atomics and cells from.
//!
//! Under `cfg(loom)` (set only by the `loom-tests` crate, which compiles the
//! real `ring.rs` and `flow` sources through `#[path]`), these are loom's
//! model-checked types; otherwise they are the standard library's. This is
//! the shim tokio keeps in `src/loom/` and crossbeam in `primitive`.

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
}

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) mod atomic {
    pub(crate) use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
}

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::Arc;

/// A mutex whose `lock` hands back its guard: parking_lot's, or loom's
/// under `cfg(loom)`.
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use parking_lot::Mutex;

#[cfg(loom)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        // A panic while holding it fails the model anyway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Lets another thread run while spinning on a condition (loom must see it
/// to explore the other threads).
#[cfg(not(loom))]
#[allow(dead_code)]
pub(crate) fn spin_yield() {
    std::thread::yield_now();
}

#[cfg(loom)]
#[allow(dead_code)]
pub(crate) fn spin_yield() {
    loom::thread::yield_now();
}
