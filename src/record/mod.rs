//! What the host records (spans, log records, metric data points), and its OTLP protobuf wire encoding.
//!
//! The types here borrow their data so that recording allocates nothing; the
//! encoders write straight into a ring record, after sizing it exactly.

pub mod attribute_set;
pub mod ids;
pub mod log;
pub mod metric;
pub(crate) mod proto3;
pub mod signal;
pub mod span;
pub mod template;
pub mod value;
pub mod wire;

pub use attribute_set::AttributeSet;
pub use log::{LogRecord, Severity};
pub use metric::{
    ExpBuckets, ExpHistogramPoint, HistogramPoint, MetricData, MetricPoint, Number, Temporality,
};
pub use signal::{PerSignal, Signal};
pub use span::{Event, Link, Span, SpanKind, Status, StatusCode};
pub use template::{SpanShape, TemplateSpan};
pub use value::{KeyValue, OwnedValue, Value};
