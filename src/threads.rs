//! Which threads are otlpflow's own (its workers, its collector, its
//! receiver): the bridges ignore what those threads record through
//! `tracing` or `log` (h2 and hyper log through `tracing`), so that
//! exporting never feeds itself.

use std::cell::Cell;

thread_local! {
    static OWN: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one of otlpflow's own.
pub(crate) fn mark_own() {
    OWN.with(|c| c.set(true));
}

/// Whether the calling thread is one of otlpflow's own.
#[cfg_attr(not(any(feature = "tracing", feature = "log")), allow(dead_code))]
#[inline]
pub(crate) fn is_own() -> bool {
    OWN.with(|c| c.get())
}
