//! Flow control primitives, lock-free and model-checked with loom
//! (`loom-tests/` compiles these very files): an atomic token bucket (GCRA)
//! and a sliding-window limiter with fixed memory. The pipeline applies the
//! token buckets at ingest (records and bytes per second): an over-limit
//! record is refused with `RateLimited` and counted.

pub mod bucket;
pub mod window;

pub use bucket::TokenBucket;
pub use window::SlidingWindow;
