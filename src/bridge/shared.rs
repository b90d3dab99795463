//! What the `tracing` and `log` bridges share: a bounded table of scopes
//! by name, and a per-thread id generator.

#[cfg(feature = "tracing")]
use std::cell::Cell;

use parking_lot::RwLock;

use crate::engine::{Pipeline, Scope};

/// Instrumentation scopes by name (a `tracing` target, a `log` target),
/// registered once each, up to a bound: past it every further name shares
/// one overflow scope, and how many names overflowed is counted.
pub(crate) struct Scopes {
    known: RwLock<Vec<(&'static str, Scope)>>,
    overflow: Scope,
    overflowed: std::sync::atomic::AtomicU64,
}

/// Names with a scope of their own.
pub(crate) const MAX_SCOPES: usize = 256;

impl Scopes {
    pub(crate) fn new(pipeline: &Pipeline) -> Scopes {
        Scopes {
            known: RwLock::new(Vec::new()),
            overflow: pipeline.scope("otlpflow.overflow", crate::VERSION),
            overflowed: Default::default(),
        }
    }

    /// The scope of `name`, registering it on first use.
    pub(crate) fn get(&self, pipeline: &Pipeline, name: &'static str) -> Scope {
        if let Some((_, s)) = self.known.read().iter().find(|(n, _)| *n == name) {
            return *s;
        }
        let mut known = self.known.write();
        if let Some((_, s)) = known.iter().find(|(n, _)| *n == name) {
            return *s;
        }
        if known.len() >= MAX_SCOPES {
            self.overflowed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return self.overflow;
        }
        let s = pipeline.scope(name, "");
        known.push((name, s));
        s
    }

    /// Records recorded under the overflow scope because the bound was hit.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

// The ids are the `tracing` layer's (the `log` bridge takes the current
// span's).
#[cfg(feature = "tracing")]
thread_local! {
    /// This thread's id generator (SplitMix64 over a per-thread seed).
    static IDS: Cell<u64> = Cell::new(seed());
}

#[cfg(feature = "tracing")]
fn seed() -> u64 {
    let t = crate::clock::now_unix_nano();
    let here = &t as *const u64 as u64;
    crate::workload::splitmix(t ^ here.rotate_left(32))
}

#[cfg(feature = "tracing")]
/// A fresh non-zero 64-bit id from this thread's generator.
pub(crate) fn next_id() -> u64 {
    IDS.with(|c| {
        let mut v;
        loop {
            let s = c.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            c.set(s);
            v = crate::workload::splitmix(s);
            if v != 0 {
                return v;
            }
        }
    })
}

#[cfg(feature = "tracing")]
/// A fresh trace id (16 bytes, not all zero).
pub(crate) fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_id().to_be_bytes());
    id[8..].copy_from_slice(&next_id().to_be_bytes());
    id
}

#[cfg(feature = "tracing")]
/// A fresh span id (8 bytes, not zero).
pub(crate) fn new_span_id() -> [u8; 8] {
    next_id().to_be_bytes()
}
