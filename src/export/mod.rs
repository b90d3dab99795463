//! Export: compression, the wire protocols (OTLP/gRPC, OTLP/HTTP over
//! HTTP/1.1 or HTTP/2), the OTLP specification's retry rules, and backoff.
//!
//! Layers, as in h2: `compress` and the response decoders are plain
//! functions over bytes; `h2conn` and `http` hold connection state; the
//! [`Exporter`] is what a worker calls.

pub(crate) mod compress;
pub(crate) mod grpc;
pub(crate) mod h2conn;
pub(crate) mod http;
pub(crate) mod tls;

use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use crate::config::{Config, Protocol, RetryConfig};

/// The largest response body accepted: a response is a few bytes; this only
/// stops a broken server from making us buffer without bound.
pub(crate) const MAX_RESPONSE: usize = 4 << 20;

/// gRPC status codes (grpc/grpc `doc/statuscodes.md`), the full table even
/// where this exporter does not name a code yet.
#[allow(dead_code)]
pub(crate) mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const ABORTED: u32 = 10;
    pub const OUT_OF_RANGE: u32 = 11;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const DATA_LOSS: u32 = 15;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// Why an export attempt failed.
#[derive(Debug, Clone)]
pub(crate) enum ExportError {
    /// Could not connect, or the connection broke before a response.
    Transport(String),
    /// A gRPC status other than OK, with the server's `RetryInfo` delay if
    /// it sent one.
    Status {
        code: u32,
        message: String,
        retry_after: Option<Duration>,
    },
    /// An OTLP/HTTP status other than 2xx, with its `Retry-After`.
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The attempt took longer than the request timeout.
    Timeout,
    /// The response was malformed (not OTLP, too large, undecodable).
    Protocol(String),
    /// TLS refused: the certificate is not valid for the endpoint, or the
    /// handshake failed in a way a retry cannot fix.
    Tls(String),
}

impl ExportError {
    /// Whether a later attempt could succeed, by the OTLP specification:
    /// gRPC CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE
    /// and DATA_LOSS are retried, RESOURCE_EXHAUSTED only with RetryInfo;
    /// HTTP 429, 502, 503 and 504 are retried; so are connection failures
    /// and timeouts. Everything else is permanent.
    pub fn retryable(&self) -> bool {
        match self {
            ExportError::Transport(_) | ExportError::Timeout => true,
            ExportError::Status {
                code, retry_after, ..
            } => match *code {
                code::CANCELLED
                | code::DEADLINE_EXCEEDED
                | code::ABORTED
                | code::OUT_OF_RANGE
                | code::UNAVAILABLE
                | code::DATA_LOSS => true,
                code::RESOURCE_EXHAUSTED => retry_after.is_some(),
                _ => false,
            },
            ExportError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            ExportError::Protocol(_) | ExportError::Tls(_) => false,
        }
    }

    /// Whether the receiver pushed back on load (HTTP 429/503, gRPC
    /// RESOURCE_EXHAUSTED/UNAVAILABLE) or the request timed out: the
    /// adaptive concurrency's signal to back off.
    pub fn throttled(&self) -> bool {
        match self {
            ExportError::Timeout => true,
            ExportError::Status { code, .. } => {
                matches!(*code, code::RESOURCE_EXHAUSTED | code::UNAVAILABLE)
            }
            ExportError::Http { status, .. } => matches!(status, 429 | 503),
            _ => false,
        }
    }

    /// Whether nothing usable came back: no connection, no response in
    /// time, or a gateway/unavailable status. The circuit breaker counts
    /// these; any other answer shows the endpoint is up.
    pub fn no_answer(&self) -> bool {
        match self {
            ExportError::Transport(_) | ExportError::Timeout => true,
            ExportError::Status { code, .. } => *code == code::UNAVAILABLE,
            ExportError::Http { status, .. } => matches!(status, 502..=504),
            ExportError::Protocol(_) | ExportError::Tls(_) => false,
        }
    }

    /// The delay the server asked for (RetryInfo or Retry-After).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExportError::Status { retry_after, .. } | ExportError::Http { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether the receiver refused our compression (gRPC UNIMPLEMENTED
    /// about an encoding, HTTP 415, or a 400 about an encoding).
    pub fn refuses_encoding(&self) -> bool {
        match self {
            ExportError::Status { code, message, .. } => {
                *code == code::UNIMPLEMENTED && message.to_ascii_lowercase().contains("encoding")
            }
            ExportError::Http {
                status, message, ..
            } => {
                *status == 415
                    || (*status == 400 && message.to_ascii_lowercase().contains("encoding"))
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Transport(m) => write!(f, "transport: {m}"),
            ExportError::Status { code, message, .. } => write!(f, "grpc-status {code}: {message}"),
            ExportError::Http {
                status, message, ..
            } => write!(f, "HTTP {status}: {message}"),
            ExportError::Timeout => f.write_str("request timed out"),
            ExportError::Protocol(m) => write!(f, "malformed response: {m}"),
            ExportError::Tls(m) => write!(f, "TLS: {m}"),
        }
    }
}

/// What the server said about an accepted request.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ack {
    /// Records the server rejected (partial success).
    pub rejected: u64,
    /// The server's message about them.
    pub message: String,
}

/// Decodes an `Export*ServiceResponse` body (OTLP/HTTP, or the message
/// inside the gRPC frame) into its partial success. The three signals'
/// responses share one shape (`partial_success = 1 { rejected_* = 1,
/// error_message = 2 }`), so the traces type decodes them all.
pub(crate) fn parse_export_response(msg: &[u8]) -> Result<Ack, ExportError> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let resp = ExportTraceServiceResponse::decode(msg)
        .map_err(|e| ExportError::Protocol(format!("ExportTraceServiceResponse: {e}")))?;
    Ok(match resp.partial_success {
        Some(p) => Ack {
            rejected: p.rejected_spans.max(0) as u64,
            message: p.error_message,
        },
        None => Ack::default(),
    })
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin` and in
/// OTLP/HTTP error bodies.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<RpcAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<RpcDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The type URL of `google.rpc.RetryInfo` inside an `Any`.
pub(crate) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The `RetryInfo` delay in a `google.rpc.Status`, if any (negative delays
/// are ignored, absurd ones capped at an hour).
pub(crate) fn retry_info_delay(status: &RpcStatus) -> Option<Duration> {
    status
        .details
        .iter()
        .filter(|d| d.type_url == RETRY_INFO_TYPE)
        .find_map(|d| RetryInfo::decode(&d.value[..]).ok()?.retry_delay)
        .filter(|d| d.seconds >= 0 && d.nanos >= 0)
        .map(|d| {
            (Duration::from_secs(d.seconds as u64) + Duration::from_nanos(d.nanos as u64))
                .min(Duration::from_secs(3600))
        })
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

/// The exporter of one worker, for the configured protocol.
pub(crate) enum Exporter {
    Grpc(grpc::GrpcExporter),
    Http(http::HttpExporter),
}

impl Exporter {
    pub fn new(cfg: &Config) -> Exporter {
        match cfg.protocol {
            Protocol::Grpc => Exporter::Grpc(grpc::GrpcExporter::new(cfg)),
            Protocol::HttpProtobuf => Exporter::Http(http::HttpExporter::new(cfg)),
        }
    }

    /// Bytes of framing the protocol puts in front of the message.
    pub fn prefix_len(&self) -> usize {
        match self {
            Exporter::Grpc(_) => grpc::GRPC_PREFIX,
            Exporter::Http(_) => 0,
        }
    }

    /// Writes the framing for a message of `len` bytes into `out`
    /// (`prefix_len` bytes).
    pub fn write_prefix(&self, out: &mut [u8], len: usize, compressed: bool) {
        if let Exporter::Grpc(_) = self {
            out[0] = compressed as u8;
            out[1..grpc::GRPC_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
        }
    }

    /// Sends one framed request and waits for the answer.
    pub async fn send(&self, chunks: &[Bytes]) -> Result<Ack, ExportError> {
        match self {
            Exporter::Grpc(g) => g.send(chunks).await,
            Exporter::Http(h) => h.send(chunks).await,
        }
    }
}

/// Exponential backoff with full jitter (AWS architecture blog, "Exponential
/// Backoff And Jitter"): each delay is uniform in `[d/2, d]` where `d`
/// grows by `multiplier` from `initial_backoff` up to `max_backoff`.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    multiplier: f64,
    rng: u64,
}

impl Backoff {
    pub fn new(cfg: &RetryConfig, seed: u64) -> Backoff {
        Backoff {
            next: cfg.initial_backoff,
            max: cfg.max_backoff,
            multiplier: cfg.multiplier,
            rng: seed | 1,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.mul_f64(self.multiplier).min(self.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        half + Duration::from_nanos(self.rng % (half.as_nanos() as u64 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_in_bounds() {
        let cfg = RetryConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            max_elapsed: Duration::from_secs(1),
            multiplier: 2.0,
        };
        let mut b = Backoff::new(&cfg, 42);
        let expect = [10, 20, 40, 80, 80, 80];
        for ms in expect {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(ms) / 2 && d <= Duration::from_millis(ms),
                "{d:?} vs {ms}"
            );
        }
    }

    #[test]
    fn the_specs_retry_table() {
        let status = |code, retry_after| ExportError::Status {
            code,
            message: String::new(),
            retry_after,
        };
        for c in [1, 4, 10, 11, 14, 15] {
            assert!(status(c, None).retryable(), "code {c}");
        }
        for c in [2, 3, 5, 6, 7, 9, 12, 13, 16] {
            assert!(!status(c, None).retryable(), "code {c}");
        }
        assert!(!status(8, None).retryable());
        assert!(status(8, Some(Duration::from_millis(5))).retryable());
        let http = |status| ExportError::Http {
            status,
            message: String::new(),
            retry_after: None,
        };
        for s in [429, 502, 503, 504] {
            assert!(http(s).retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 415, 500, 501] {
            assert!(!http(s).retryable(), "{s}");
        }
        assert!(ExportError::Transport("reset".into()).retryable());
        assert!(!ExportError::Protocol("garbage".into()).retryable());
    }

    #[test]
    fn retry_info_and_retry_after() {
        let info = RetryInfo {
            retry_delay: Some(RpcDuration {
                seconds: 1,
                nanos: 500_000_000,
            }),
        };
        let st = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![RpcAny {
                type_url: RETRY_INFO_TYPE.into(),
                value: info.encode_to_vec(),
            }],
        };
        assert_eq!(retry_info_delay(&st), Some(Duration::from_millis(1500)));
        assert_eq!(retry_info_delay(&RpcStatus::default()), None);
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
