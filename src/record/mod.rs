//! What the host records, and its OTLP protobuf wire encoding.
//!
//! The types here borrow their data so that recording allocates nothing; the
//! encoders write straight into a ring record, after sizing it exactly.

pub mod span;
pub mod value;
pub mod wire;

pub use span::{Event, Link, Span, SpanKind, Status, StatusCode};
pub use value::{KeyValue, OwnedValue, Value};
