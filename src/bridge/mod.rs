//! Bridges for programs already instrumented with something else, above
//! the engine: a `tracing` layer (feature `tracing`), a `log` logger
//! (feature `log`), processors for the OpenTelemetry Rust SDK (feature
//! `opentelemetry`), and W3C trace context (`traceparent`) helpers they
//! share. Each turns the other library's records into otlpflow records at
//! the moment they end, straight into the rings.

pub mod traceparent;

#[cfg(feature = "log")]
pub mod log;
#[cfg(feature = "opentelemetry")]
pub mod opentelemetry;
#[cfg(feature = "tracing")]
pub mod tracing;

#[cfg(any(feature = "tracing", feature = "log"))]
mod shared;
#[cfg(any(feature = "tracing", feature = "log"))]
pub(crate) use shared::*;
