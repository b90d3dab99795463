//! Loom model checks of otlpflow's lock-free parts. The modules below are the
//! engine's own source files, compiled here with `cfg(loom)` so that loom
//! explores their real interleavings: not a copy of the code.

#[path = "../../src/sync.rs"]
#[allow(dead_code)]
mod sync;

#[path = "../../src/ring.rs"]
#[allow(dead_code)]
pub mod ring;

#[path = "../../src/flow/bucket.rs"]
#[allow(dead_code)]
pub mod bucket;

#[path = "../../src/flow/window.rs"]
#[allow(dead_code)]
pub mod window;

#[path = "../../src/flow/budget.rs"]
#[allow(dead_code)]
pub mod budget;

#[path = "../../src/metrics/cell.rs"]
#[allow(dead_code)]
pub mod cell;

#[path = "../../src/metrics/table.rs"]
#[allow(dead_code)]
pub mod table;
