//! OTLP as a protocol, shared by the exporter and the embedded receiver:
//! the service paths of each signal, gRPC framing and status codes, the
//! `google.rpc` error details, and body compression. Plain values and
//! functions over bytes; no connection state (that is `export` and `sink`).
//!
//! References: the OTLP specification (opentelemetry-proto
//! `docs/specification.md`) and gRPC over HTTP/2 (grpc/grpc
//! `doc/PROTOCOL-HTTP2.md`).

pub mod compress;
pub(crate) mod form;
pub mod grpc;
pub mod status;

use crate::record::Signal;

/// The gRPC method that exports `signal`.
pub fn grpc_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    }
}

/// The signal a gRPC method exports.
pub fn signal_of_grpc_path(path: &str) -> Option<Signal> {
    Signal::ALL.into_iter().find(|s| grpc_path(*s) == path)
}

/// The default OTLP/HTTP path of `signal` (`/v1/traces`, ...).
pub fn http_path(signal: Signal) -> String {
    format!("/v1/{}", signal.name())
}

/// The signal an OTLP/HTTP path exports (`/v1/<signal>`).
pub fn signal_of_http_path(path: &str) -> Option<Signal> {
    Signal::ALL
        .into_iter()
        .find(|s| path.strip_prefix("/v1/") == Some(s.name()))
}
