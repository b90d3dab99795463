//! What the `tracing` and `log` bridges share: a bounded table of scopes
//! by name, and a per-thread id generator.

use parking_lot::RwLock;

use crate::engine::{Pipeline, Scope, OVERFLOW_SCOPE};

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
            overflow: pipeline.scope(OVERFLOW_SCOPE, crate::VERSION),
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
// span's), from the record layer's per-thread generator.
#[cfg(feature = "tracing")]
pub(crate) use crate::record::ids::{new_span_id, new_trace_id};
