//! Flow control. The shared, lock-free parts are model-checked with loom
//! (`loom-tests/` compiles these very files): an atomic token bucket (GCRA),
//! a sliding-window limiter with fixed memory and the global memory budget.
//! The per-worker controllers (adaptive concurrency, circuit breaker) run on
//! one thread each and are plain state machines driven by the worker.
//!
//! Where the pipeline applies them: the token buckets at ingest (records and
//! bytes per second: an over-limit record is refused with `RateLimited`) and
//! at egress (bytes per second on the wire: a request waits, it is not
//! dropped); the memory budget at ingest (the policy decides between waiting
//! and `Memory`) and on every batch until its request is answered; the
//! system's memory use at ingest (sampled by a thread; the policy decides
//! between waiting and `SystemMemory`).

pub mod breaker;
pub mod bucket;
pub mod budget;
pub mod concurrency;
pub mod system_memory;
pub mod window;

pub use breaker::Breaker;
pub use bucket::TokenBucket;
pub use budget::MemoryBudget;
pub use concurrency::Aimd;
pub use system_memory::{MemorySource, SystemMemory};
pub use window::SlidingWindow;
