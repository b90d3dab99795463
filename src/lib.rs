//! otlpflow: a lock-free, high-throughput telemetry ingestion engine.
//!
//! Host threads record spans on their hot path; otlpflow encodes them as OTLP
//! protobuf straight into per-core lock-free rings, worker threads batch,
//! compress and export them over HTTP/2 (OTLP/gRPC) to any OTLP receiver.
//!
//! ```no_run
//! use otlpflow::{Pipeline, Span, SpanKind, KeyValue, Value};
//! use std::time::Duration;
//!
//! let pipeline = Pipeline::builder()
//!     .endpoint("http://localhost:4317")
//!     .service_name("checkout")
//!     .start()?;
//! let scope = pipeline.scope("my-lib", "1.0");
//! let attrs = [KeyValue::new("http.request.method", Value::Str("GET"))];
//! let span = Span {
//!     trace_id: [1; 16],
//!     span_id: [2; 8],
//!     name: "GET /items",
//!     kind: SpanKind::Server,
//!     start_time_unix_nano: 1,
//!     end_time_unix_nano: 2,
//!     attributes: &attrs,
//!     ..Default::default()
//! };
//! pipeline.record_span(&scope, &span)?;
//! pipeline.shutdown(Duration::from_secs(5))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

// The modules (rustfmt keeps them sorted); ARCHITECTURE.md lists them as
// layers, bottom to top, and what each may import.
mod bridge;
mod cache_line;
mod checksum;
pub mod clock;
mod config;
mod engine;
mod error;
mod export;
pub mod flow;
pub mod metrics;
pub mod otlp;
pub mod prometheus;
pub mod record;
pub mod ring;
mod route;
pub mod sink;
mod spool;
mod stats;
mod sync;
mod threads;
mod tls;
pub mod workload;

#[cfg(feature = "log")]
pub use bridge::log;
#[cfg(feature = "opentelemetry")]
pub use bridge::opentelemetry;
pub use bridge::traceparent;
#[cfg(feature = "tracing")]
pub use bridge::tracing;

pub use config::{
    parse_bytes, parse_duration, BreakerConfig, Compression, Config, Endpoint, FlowConfig, Headers,
    HttpVersion, PipelineBuilder, Policy, Protocol, Resolver, RetryConfig, RetryQueue, Routing,
    SpoolFull, SpoolSync, TlsSettings, SETTINGS,
};
pub use engine::{
    fork, Acked, BatchResult, Delivery, Pipeline, Receipt, Recordable, Scope, SpanTemplate,
};
pub use error::{Error, RecordError};
pub use metrics::{BoundCounter, BoundHistogram, Counter, Gauge, Histogram, UpDownCounter};
pub use record::{
    AttributeSet, Event, ExpBuckets, ExpHistogramPoint, HistogramPoint, KeyValue, Link, LogRecord,
    MetricData, MetricPoint, Number, OwnedValue, PerSignal, Severity, Signal, Span, SpanKind,
    SpanShape, Status, StatusCode, TemplateSpan, Temporality, Value,
};
pub use stats::{
    DropReason, Dropped, EndpointStats, FailReason, Failed, Health, Latency, Rates, SpoolStats,
    Stats,
};

/// The `User-Agent` otlpflow sends.
pub const USER_AGENT: &str = concat!("otlpflow/", env!("CARGO_PKG_VERSION"));

/// The version of this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod __private {
    //! Internals exposed for benches and tests only; not a stable API.
    pub use crate::engine::batch::{Batch, ClosedBatch};
    pub use crate::export::read_response;
    pub use crate::otlp::compress::Compressor;
}
