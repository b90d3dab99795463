//! Export: compression, the wire protocols (OTLP/gRPC, OTLP/HTTP over
//! HTTP/1.1 or HTTP/2), the OTLP specification's retry rules, and backoff.
//!
//! Layers, as in h2: the OTLP framing, status codes and compression are
//! plain functions in `crate::otlp`; `connect`, `h2conn` and `http` hold
//! connection state; the [`Exporter`] is what a worker calls, built from
//! one signal's [`ExportSettings`].

pub(crate) mod connect;
pub(crate) mod grpc;
pub(crate) mod h2conn;
pub(crate) mod http;
mod redirect;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use crate::config::{Compression, Config, Endpoint, Headers, HttpVersion, Protocol, RetryConfig};
use crate::error::Error;
use crate::otlp::status::code;
use crate::record::{PerSignal, Signal};
use connect::Connector;
use h2conn::PoolSettings;

/// The largest response body accepted: a response is a few bytes; this only
/// stops a broken server from making us buffer without bound.
pub(crate) const MAX_RESPONSE: usize = 4 << 20;

/// The largest header list of a response (its headers, and its trailers
/// apart) accepted over HTTP/2, decoded, as SETTINGS_MAX_HEADER_LIST_SIZE
/// tells the server: a response's headers take a few hundred bytes. h2's
/// default, 16 MiB, let a broken or hostile receiver make every connection
/// buffer that much outside the memory budget; 16 KiB is hyper's HTTP/2
/// client default.
pub(crate) const MAX_RESPONSE_HEADERS: u32 = 16 << 10;

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
        // Messages may come from the server: printed escaped.
        use crate::error::printable as p;
        match self {
            ExportError::Transport(m) => write!(f, "transport: {}", p(m)),
            ExportError::Status { code, message, .. } => {
                write!(f, "grpc-status {code}: {}", p(message))
            }
            ExportError::Http {
                status, message, ..
            } => write!(f, "HTTP {status}: {}", p(message)),
            ExportError::Timeout => f.write_str("request timed out"),
            ExportError::Protocol(m) => write!(f, "malformed response: {}", p(m)),
            ExportError::Tls(m) => write!(f, "TLS: {}", p(m)),
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

/// A response body encoded as `token` says (`grpc-encoding` for a gRPC
/// message flagged compressed, `Content-Encoding` over OTLP/HTTP),
/// decoded to at most [`MAX_RESPONSE`] bytes. A gRPC server may compress
/// its response with the request's encoding whatever the client
/// advertised (grpc-go, the Collector's, does), and an HTTP proxy may
/// compress what it forwards; an encoding this crate cannot decode, or a
/// body that inflates past the limit, is a malformed response.
pub(crate) fn decode_response<'a>(
    token: &str,
    body: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, ExportError> {
    match Compression::from_token(token) {
        Some(Compression::None) => Ok(body.into()),
        Some(c) => crate::otlp::compress::decompress(c, body, MAX_RESPONSE)
            .map(Into::into)
            .map_err(|e| {
                ExportError::Protocol(if e.kind() == std::io::ErrorKind::FileTooLarge {
                    format!("{token} response inflates past {MAX_RESPONSE} bytes")
                } else {
                    format!("{token} response does not decode: {e}")
                })
            }),
        None => Err(ExportError::Protocol(format!(
            "response encoded as {token:?}, which otlpflow does not decode"
        ))),
    }
}

/// How the exporter reads a receiver's answer, over gRPC (`grpc`) or
/// OTLP/HTTP: the records a partial success rejected and its message, or
/// the error as the exporter reports it. For the `responses` fuzz target
/// (`otlpflow::__private`); not a stable API.
pub fn read_response(
    grpc: bool,
    status: u16,
    headers: &::http::HeaderMap,
    trailers: Option<&::http::HeaderMap>,
    body: &[u8],
) -> Result<(u64, String), String> {
    let status = ::http::StatusCode::from_u16(status).map_err(|e| e.to_string())?;
    let ack = if grpc {
        grpc::read_answer(status, headers, trailers, body)
    } else {
        http::interpret(status, headers, body)
    };
    ack.map(|a| (a.rejected, a.message))
        .map_err(|e| e.to_string())
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

/// What one signal's exporter needs, resolved once when the pipeline
/// starts: the endpoint and its connector (TLS exactly when the signal's
/// own endpoint is `https://`), the path, headers, compression, timeout and
/// connection pool.
#[derive(Clone)]
pub(crate) struct ExportSettings {
    pub signal: Signal,
    pub protocol: Protocol,
    pub http_version: HttpVersion,
    pub endpoint: Endpoint,
    pub http_path: String,
    /// The URI of every request: the endpoint with the gRPC method's path,
    /// or with `http_path` for OTLP/HTTP.
    pub uri: ::http::Uri,
    pub compression: Compression,
    pub compression_level: i32,
    pub headers: Headers,
    pub timeout: Duration,
    pub pool: PoolSettings,
    pub connector: Connector,
}

impl ExportSettings {
    /// Each signal's settings, one per endpoint it routes to. The TLS
    /// client (its files read now, so that a bad one is a configuration
    /// error) is built once, if any endpoint is `https://`, and used by
    /// exactly those endpoints.
    pub fn for_config(cfg: &Config) -> Result<PerSignal<Vec<ExportSettings>>, Error> {
        // One TLS client per ALPN offer that some https:// signal needs
        // (signals may differ in protocol): HTTP/1.1 must not be offered h2.
        let mut clients: Vec<(bool, Arc<rustls::ClientConfig>)> = Vec::new();
        PerSignal::try_from_fn(|signal| {
            let s = &cfg.signals[signal];
            s.targets
                .iter()
                .map(|(endpoint, path)| Self::for_target(cfg, signal, endpoint, path, &mut clients))
                .collect()
        })
    }

    /// One endpoint's settings (see `for_config`); `clients` caches the
    /// TLS clients built so far.
    pub(crate) fn for_target(
        cfg: &Config,
        signal: Signal,
        endpoint: &Endpoint,
        http_path: &str,
        clients: &mut Vec<(bool, Arc<rustls::ClientConfig>)>,
    ) -> Result<ExportSettings, Error> {
        {
            let s = &cfg.signals[signal];
            let tls = if endpoint.scheme == "https" {
                // The host first: one TLS cannot verify is refused as such
                // before the trust roots are read.
                let name = connect::tls_name(endpoint)?;
                let http1 =
                    s.protocol == Protocol::HttpProtobuf && cfg.http_version == HttpVersion::Http1;
                let config = match clients.iter().find(|(h1, _)| *h1 == http1) {
                    Some((_, c)) => c.clone(),
                    None => {
                        let alpn: &[&[u8]] = if http1 { &[b"http/1.1"] } else { &[b"h2"] };
                        let c = crate::tls::client_config(&cfg.tls, alpn)?;
                        clients.push((http1, c.clone()));
                        c
                    }
                };
                Some((config, name))
            } else {
                None
            };
            // OTLP/HTTP keeps the endpoint's query after the signal's path;
            // gRPC's path is the method's.
            let path = match s.protocol {
                Protocol::Grpc => crate::otlp::grpc_path(signal).to_owned(),
                Protocol::HttpProtobuf => format!("{http_path}{}", endpoint.query.0),
            };
            // A host or path a URI cannot hold (a space, say) is refused
            // here: the exporters fell back to `localhost/v1/traces`, and a
            // signal's records went to another signal's path unnoticed.
            let uri = format!("{}://{}{path}", endpoint.scheme, endpoint.authority)
                .parse()
                .map_err(|e| {
                    Error::config(format!(
                        "endpoint {}://{}: its host or path cannot be sent in a request ({e})",
                        endpoint.scheme, endpoint.authority
                    ))
                })?;
            Ok(ExportSettings {
                signal,
                protocol: s.protocol,
                http_version: cfg.http_version,
                connector: Connector::new(endpoint, tls),
                endpoint: endpoint.clone(),
                http_path: http_path.to_owned(),
                uri,
                compression: s.compression,
                compression_level: cfg.compression_level,
                headers: with_credentials(&s.headers, endpoint),
                timeout: s.timeout,
                pool: PoolSettings {
                    connections: cfg.connections_per_worker,
                    keepalive: cfg.keepalive,
                    idle_timeout: cfg.idle_timeout,
                },
            })
        }
    }
}

/// `headers`, with the `Basic` credentials of the endpoint's URL unless
/// an `authorization` header is set (which wins, as in Go's HTTP client).
fn with_credentials(headers: &Headers, endpoint: &Endpoint) -> Headers {
    let mut h = headers.clone();
    if let Some(auth) = &endpoint.basic_auth {
        if !h.0.iter().any(|(k, _)| k == ::http::header::AUTHORIZATION) {
            h.0.push((::http::header::AUTHORIZATION, auth.clone()));
        }
    }
    h
}

/// The exporter of one worker, for the configured protocol.
pub(crate) enum Exporter {
    Grpc(grpc::GrpcExporter),
    Http(http::HttpExporter),
}

impl Exporter {
    pub fn new(settings: &ExportSettings) -> Exporter {
        match settings.protocol {
            Protocol::Grpc => Exporter::Grpc(grpc::GrpcExporter::new(settings)),
            Protocol::HttpProtobuf => Exporter::Http(http::HttpExporter::new(settings)),
        }
    }

    /// Bytes of framing the protocol puts in front of the message.
    pub fn prefix_len(&self) -> usize {
        match self {
            Exporter::Grpc(_) => crate::otlp::grpc::GRPC_PREFIX,
            Exporter::Http(_) => 0,
        }
    }

    /// Writes the framing for a message of `len` bytes into `out`
    /// (`prefix_len` bytes).
    pub fn write_prefix(&self, out: &mut [u8], len: usize, compressed: bool) {
        if let Exporter::Grpc(_) = self {
            crate::otlp::grpc::write_prefix(out, len, compressed);
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
}
