//! OTLP/gRPC over cleartext HTTP/2 with `h2`: one connection per worker,
//! several streams in flight on it, gRPC message framing, `grpc-status` from
//! trailers (or a trailers-only response), `grpc-encoding`, `grpc-timeout`.
//!
//! References: gRPC over HTTP/2 (grpc/grpc `doc/PROTOCOL-HTTP2.md`) and the
//! OTLP specification (opentelemetry-proto `docs/specification.md`).

use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use prost::Message;
use tokio::net::TcpStream;

use crate::config::{Compression, Endpoint};

/// gRPC's length-prefixed message header: a compressed flag and a 4-byte
/// big-endian length.
pub(crate) const GRPC_PREFIX: usize = 5;
/// The largest response body we accept (a response is a few bytes; this only
/// stops a broken server from making us buffer without bound).
const MAX_RESPONSE: usize = 4 << 20;
/// HTTP/2 flow-control windows. h2's default of 64 KiB caps loopback
/// throughput near 1 GB/s; a batch is about 150 KB.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;

/// gRPC status codes (grpc/grpc `doc/statuscodes.md`), the full table even
/// where this exporter does not name a code yet.
#[allow(dead_code)]
pub(crate) mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
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
    /// The server answered with a non-OK gRPC status.
    Status { code: u32, message: String },
    /// The attempt took longer than the request timeout.
    Timeout,
    /// The response was malformed (not gRPC, too large, undecodable).
    Protocol(String),
}

impl ExportError {
    /// Whether a later attempt could succeed. UNAVAILABLE and transport
    /// failures are retried; the full OTLP retry table is the transport
    /// issue's work.
    pub fn retryable(&self) -> bool {
        match self {
            ExportError::Transport(_) | ExportError::Timeout => true,
            ExportError::Status { code, .. } => *code == code::UNAVAILABLE,
            ExportError::Protocol(_) => false,
        }
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Transport(m) => write!(f, "transport: {m}"),
            ExportError::Status { code, message } => write!(f, "grpc-status {code}: {message}"),
            ExportError::Timeout => f.write_str("request timed out"),
            ExportError::Protocol(m) => write!(f, "malformed response: {m}"),
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

/// The exporter of one worker. Lives on the worker's thread.
pub(crate) struct GrpcExporter {
    endpoint: Endpoint,
    uri: http::Uri,
    encoding: Option<&'static str>,
    timeout_header: String,
    headers: crate::config::Headers,
    conn: tokio::sync::Mutex<Option<SendRequest<Bytes>>>,
}

impl GrpcExporter {
    pub fn new(
        endpoint: Endpoint,
        compression: Compression,
        timeout: Duration,
        headers: crate::config::Headers,
    ) -> GrpcExporter {
        let uri = format!(
            "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            endpoint.authority
        );
        GrpcExporter {
            uri: uri
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("http://localhost/")),
            endpoint,
            encoding: compression.token(),
            headers,
            timeout_header: format!("{}m", timeout.as_millis().clamp(1, 99_999_999)),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// A ready handle on the connection, connecting first if there is none.
    async fn connection(&self) -> Result<SendRequest<Bytes>, ExportError> {
        let mut slot = self.conn.lock().await;
        if let Some(sr) = slot.as_ref() {
            return Ok(sr.clone());
        }
        let tcp = TcpStream::connect(self.endpoint.address())
            .await
            .map_err(|e| {
                ExportError::Transport(format!("connect {}: {e}", self.endpoint.address()))
            })?;
        let _ = tcp.set_nodelay(true);
        let (sr, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(1 << 20)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| ExportError::Transport(format!("HTTP/2 handshake: {e}")))?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        *slot = Some(sr.clone());
        Ok(sr)
    }

    /// Forgets a broken connection so that the next attempt reconnects.
    async fn drop_connection(&self) {
        *self.conn.lock().await = None;
    }

    /// Sends one framed gRPC message (`chunks`, the first starting with the
    /// 5-byte prefix) and waits for the status.
    pub async fn send(&self, chunks: &[Bytes]) -> Result<Ack, ExportError> {
        let result = self.attempt(chunks).await;
        if let Err(ExportError::Transport(_)) = &result {
            self.drop_connection().await;
        }
        result
    }

    async fn attempt(&self, chunks: &[Bytes]) -> Result<Ack, ExportError> {
        let sr = self.connection().await?;
        let mut sr = sr
            .ready()
            .await
            .map_err(|e| ExportError::Transport(format!("connection not ready: {e}")))?;
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header(http::header::USER_AGENT, crate::USER_AGENT)
            .header("grpc-timeout", self.timeout_header.as_str());
        if let Some(enc) = self.encoding {
            req = req.header("grpc-encoding", enc);
        }
        for (k, v) in &self.headers.0 {
            req = req.header(k, v);
        }
        let req = req
            .body(())
            .map_err(|e| ExportError::Protocol(format!("building request: {e}")))?;
        let (response, mut stream) = sr
            .send_request(req, false)
            .map_err(|e| ExportError::Transport(format!("send request: {e}")))?;
        let last = chunks.len().saturating_sub(1);
        for (i, c) in chunks.iter().enumerate() {
            stream
                .send_data(c.clone(), i == last)
                .map_err(|e| ExportError::Transport(format!("send data: {e}")))?;
        }
        let response = response
            .await
            .map_err(|e| ExportError::Transport(format!("awaiting response: {e}")))?;
        let (parts, mut body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(ExportError::Status {
                code: http_to_grpc(parts.status.as_u16()),
                message: format!("HTTP status {}", parts.status),
            });
        }
        // A trailers-only response carries grpc-status in the headers.
        if let Some(status) = grpc_status(&parts.headers)? {
            return status.map(|()| Ack::default());
        }
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk =
                chunk.map_err(|e| ExportError::Transport(format!("reading response: {e}")))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > MAX_RESPONSE {
                return Err(ExportError::Protocol(format!(
                    "response larger than {MAX_RESPONSE} bytes"
                )));
            }
            data.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| ExportError::Transport(format!("reading trailers: {e}")))?
            .ok_or_else(|| {
                ExportError::Protocol("no grpc-status: response has no trailers".into())
            })?;
        match grpc_status(&trailers)? {
            Some(Ok(())) => parse_response(&data),
            Some(Err(e)) => Err(e),
            None => Err(ExportError::Protocol(
                "trailers carry no grpc-status".into(),
            )),
        }
    }
}

/// Reads `grpc-status` and `grpc-message`: `None` if absent, `Some(Ok)` for OK.
fn grpc_status(headers: &http::HeaderMap) -> Result<Option<Result<(), ExportError>>, ExportError> {
    let Some(v) = headers.get("grpc-status") else {
        return Ok(None);
    };
    let code: u32 = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| ExportError::Protocol(format!("grpc-status {v:?} is not a number")))?;
    if code == code::OK {
        return Ok(Some(Ok(())));
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Ok(Some(Err(ExportError::Status { code, message })))
}

/// Decodes the gRPC response message: an optional 5-byte-prefixed
/// `ExportTraceServiceResponse` with `partial_success`.
fn parse_response(data: &[u8]) -> Result<Ack, ExportError> {
    if data.is_empty() {
        return Ok(Ack::default());
    }
    if data.len() < GRPC_PREFIX {
        return Err(ExportError::Protocol("truncated gRPC message".into()));
    }
    if data[0] != 0 {
        return Err(ExportError::Protocol(
            "compressed responses are not accepted".into(),
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let msg = data
        .get(GRPC_PREFIX..GRPC_PREFIX + len)
        .ok_or_else(|| ExportError::Protocol("gRPC message length exceeds the body".into()))?;
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

/// gRPC's mapping of HTTP statuses to codes, for responses that are not gRPC.
fn http_to_grpc(status: u16) -> u32 {
    match status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502..=504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// Decodes `grpc-message`'s percent-encoding; invalid sequences stay as-is.
fn percent_decode(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b%zz%4"), "a b%zz%4");
    }

    #[test]
    fn responses_parse_or_error_without_panic() {
        assert_eq!(parse_response(&[]).unwrap().rejected, 0);
        assert!(parse_response(&[0, 0, 0]).is_err());
        assert!(parse_response(&[0, 0, 0, 0, 9, 1]).is_err());
        assert!(parse_response(&[1, 0, 0, 0, 0]).is_err());
        // partial_success { rejected_spans: 3, error_message: "x" }
        let msg = [0x0a, 0x05, 0x08, 0x03, 0x12, 0x01, b'x'];
        let mut framed = vec![0, 0, 0, 0, msg.len() as u8];
        framed.extend_from_slice(&msg);
        let ack = parse_response(&framed).unwrap();
        assert_eq!((ack.rejected, ack.message.as_str()), (3, "x"));
    }

    #[test]
    fn retry_classes() {
        assert!(ExportError::Status {
            code: code::UNAVAILABLE,
            message: String::new()
        }
        .retryable());
        assert!(!ExportError::Status {
            code: code::INTERNAL,
            message: String::new()
        }
        .retryable());
        assert!(ExportError::Transport("x".into()).retryable());
        assert_eq!(http_to_grpc(503), code::UNAVAILABLE);
    }
}
