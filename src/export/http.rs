//! OTLP/HTTP with protobuf bodies: `POST /v1/traces`, `Content-Type:
//! application/x-protobuf`, `Content-Encoding: gzip|zstd`, over HTTP/1.1
//! (hyper's client connections, kept alive and pooled: one per request in
//! flight) or over cleartext HTTP/2 (prior knowledge, through `h2conn`).
//! The response is an `ExportTraceServiceResponse`; errors may carry a
//! `google.rpc.Status` body and `Retry-After`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::connect::Connector;
use super::h2conn::H2Conn;
use super::{
    decode_response, parse_export_response, redirect, Ack, ExportError, ExportSettings,
    MAX_RESPONSE,
};
use crate::config::HttpVersion;
use crate::otlp::status::{parse_retry_after, RpcStatus};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use prost::Message;

/// A request body made of the batch's chunks, sent without joining them.
pub(crate) struct ChunkBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkBody {
    fn new(chunks: &[Bytes]) -> ChunkBody {
        ChunkBody {
            remaining: chunks.iter().map(|c| c.len() as u64).sum(),
            chunks: chunks.iter().cloned().collect(),
        }
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop_front();
        if let Some(c) = &next {
            self.remaining -= c.len() as u64;
        }
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The OTLP/HTTP exporter of one worker. Lives on the worker's thread.
pub(crate) struct HttpExporter {
    uri: http::Uri,
    connector: Connector,
    version: HttpVersion,
    encoding: Option<&'static str>,
    headers: crate::config::Headers,
    h2: H2Conn,
    /// Idle HTTP/1.1 connections and when each was last used, reused for
    /// the next request unless idle past `idle_timeout`.
    idle: RefCell<Vec<(http1::SendRequest<ChunkBody>, std::time::Instant)>>,
    idle_timeout: std::time::Duration,
}

impl HttpExporter {
    pub fn new(s: &ExportSettings) -> HttpExporter {
        HttpExporter {
            uri: s.uri.clone(),
            connector: s.connector.clone(),
            version: s.http_version,
            encoding: s.compression.token(),
            headers: s.headers.clone(),
            h2: H2Conn::new(s.connector.clone(), s.pool),
            idle_timeout: s.pool.idle_timeout,
            idle: RefCell::new(Vec::new()),
        }
    }

    /// The request for `target` (the endpoint's URI, or where a redirect
    /// led within its origin).
    fn request<B>(&self, target: &http::Uri, body: B) -> Result<http::Request<B>, ExportError> {
        // HTTP/1.1 asks an origin server for the path alone (origin-form,
        // RFC 9112 §3.2.1) with a Host header; HTTP/2 takes the full URI for
        // its :scheme, :authority and :path.
        let uri = match self.version {
            HttpVersion::Http1 => target
                .path_and_query()
                .map(|pq| http::Uri::from(pq.clone()))
                .unwrap_or_else(|| target.clone()),
            HttpVersion::Http2 => target.clone(),
        };
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::USER_AGENT, crate::USER_AGENT);
        if let Some(enc) = self.encoding {
            req = req.header(http::header::CONTENT_ENCODING, enc);
        }
        if self.version == HttpVersion::Http1 {
            if let Some(host) = self.uri.authority() {
                req = req.header(http::header::HOST, host.as_str());
            }
        }
        for (k, v) in &self.headers.0 {
            req = req.header(k, v);
        }
        req.body(body)
            .map_err(|e| ExportError::Protocol(format!("building request: {e}")))
    }

    /// Sends one request body (the message, compressed or not) and reads
    /// the answer, following 307 and 308 redirects within the endpoint's
    /// origin (see `redirect`).
    pub async fn send(&self, chunks: &[Bytes]) -> Result<Ack, ExportError> {
        let mut moved: Option<http::Uri> = None;
        let mut hops = 0;
        loop {
            let target = moved.as_ref().unwrap_or(&self.uri);
            let (status, headers, body) = match self.version {
                HttpVersion::Http2 => {
                    let req = self.request(target, ())?;
                    let resp = self.h2.round_trip(req, chunks).await?;
                    (
                        resp.parts.status,
                        resp.parts.headers,
                        Bytes::from(resp.body),
                    )
                }
                HttpVersion::Http1 => self.send_http1(target, chunks).await?,
            };
            if !status.is_redirection() {
                return interpret(status, &headers, &body);
            }
            if hops == redirect::MAX_REDIRECTS {
                return Err(redirect::too_many(status));
            }
            hops += 1;
            moved = Some(redirect::follow(target, status, &headers)?);
        }
    }

    async fn send_http1(
        &self,
        target: &http::Uri,
        chunks: &[Bytes],
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), ExportError> {
        let reusable = {
            let mut idle = self.idle.borrow_mut();
            let timeout = self.idle_timeout;
            // Connections idle too long, or closed by the server, are dropped.
            idle.retain(|(s, at)| !s.is_closed() && (timeout.is_zero() || at.elapsed() < timeout));
            idle.pop().map(|(s, _)| s)
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => self.connect_http1().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| ExportError::Transport(format!("connection not ready: {e}")))?;
        let resp = sender
            .send_request(self.request(target, ChunkBody::new(chunks))?)
            .await
            .map_err(|e| ExportError::Transport(format!("HTTP/1.1 request: {e}")))?;
        let (parts, body) = resp.into_parts();
        let body = http_body_util::Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ExportError::Protocol(format!("response larger than {MAX_RESPONSE} bytes"))
                } else {
                    ExportError::Transport(format!("reading response: {e}"))
                }
            })?
            .to_bytes();
        // Keep-alive: the connection serves the next request.
        if !sender.is_closed() {
            self.idle
                .borrow_mut()
                .push((sender, std::time::Instant::now()));
        }
        Ok((parts.status, parts.headers, body))
    }

    async fn connect_http1(&self) -> Result<http1::SendRequest<ChunkBody>, ExportError> {
        let io = self.connector.connect().await?;
        let (sender, conn) = http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| ExportError::Transport(format!("HTTP/1.1 handshake: {e}")))?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// Turns an OTLP/HTTP response into an acknowledgement or an error.
pub(crate) fn interpret(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Ack, ExportError> {
    let encoding = headers
        .get(http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    if status.is_success() {
        return match encoding {
            Some(token) => success(headers, &decode_response(token, body)?),
            None => success(headers, body),
        };
    }
    // An error's body only names the error: read as it came if its
    // encoding cannot be decoded.
    let decoded = encoding.and_then(|token| decode_response(token, body).ok());
    let body = decoded.as_deref().unwrap_or(body);
    let message = match RpcStatus::decode(body) {
        Ok(st) if !st.message.is_empty() => st.message,
        _ => String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned(),
    };
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    Err(ExportError::Http {
        status: status.as_u16(),
        message,
        retry_after,
    })
}

/// What a 2xx answer's body adds to its status, read by its
/// `Content-Type` as the Collector's OTLP/HTTP exporter and
/// opentelemetry-go's read it: protobuf is an `Export*ServiceResponse` (a
/// body that does not decode is a malformed answer); JSON is its JSON
/// mapping (some receivers answer JSON whatever was sent); any other type
/// (a proxy's `OK`, an HTML page) says nothing beyond the status. Without a
/// type, the body is read as protobuf if it decodes. (Every 2xx body used
/// to be read as protobuf, so a receiver answering `{}` had a request it
/// took counted `failed[permanent]`.)
fn success(headers: &http::HeaderMap, body: &[u8]) -> Result<Ack, ExportError> {
    if body.is_empty() {
        return Ok(Ack::default());
    }
    let media = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match media.as_deref() {
        Some("application/x-protobuf" | "application/protobuf") => parse_export_response(body),
        Some("application/json") => parse_json_response(body),
        Some(_) => Ok(Ack::default()),
        None => Ok(parse_export_response(body).unwrap_or_default()),
    }
}

/// An `Export*ServiceResponse` in protobuf's JSON mapping: its
/// `partialSuccess` (or `partial_success`), with the rejected count of any
/// signal (`rejectedSpans`, `rejectedLogRecords`, `rejectedDataPoints`, as a
/// string or a number, int64's JSON forms) and `errorMessage`.
fn parse_json_response(body: &[u8]) -> Result<Ack, ExportError> {
    let malformed = |why: &str| ExportError::Protocol(format!("JSON export response: {why}"));
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| malformed(&e.to_string()))?;
    let field = |v: &'_ serde_json::Value, camel: &str, snake: &str| {
        v.get(camel).or_else(|| v.get(snake)).cloned()
    };
    let Some(partial) = field(&v, "partialSuccess", "partial_success") else {
        return Ok(Ack::default());
    };
    let mut ack = Ack::default();
    for (camel, snake) in [
        ("rejectedSpans", "rejected_spans"),
        ("rejectedLogRecords", "rejected_log_records"),
        ("rejectedDataPoints", "rejected_data_points"),
    ] {
        let n = match field(&partial, camel, snake) {
            None => continue,
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
            Some(_) => None,
        };
        let n = n.ok_or_else(|| malformed(&format!("{camel} is not an integer")))?;
        ack.rejected = n.max(0) as u64;
    }
    if let Some(m) = field(&partial, "errorMessage", "error_message") {
        ack.message = m
            .as_str()
            .ok_or_else(|| malformed("errorMessage is not a string"))?
            .to_owned();
    }
    Ok(ack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_interpreted_without_panicking() {
        let ok = interpret(http::StatusCode::OK, &http::HeaderMap::new(), &[]).unwrap();
        assert_eq!(ok.rejected, 0);
        // partial_success { rejected_spans: 2, error_message: "x" }
        let ack = interpret(
            http::StatusCode::OK,
            &http::HeaderMap::new(),
            &[0x0a, 0x05, 0x08, 0x02, 0x12, 0x01, b'x'],
        )
        .unwrap();
        assert_eq!((ack.rejected, ack.message.as_str()), (2, "x"));
        // A body that does not decode: malformed only where its type says
        // protobuf.
        assert!(interpret(
            http::StatusCode::OK,
            &typed("application/x-protobuf"),
            &[0xff]
        )
        .is_err());
        assert!(interpret(http::StatusCode::OK, &http::HeaderMap::new(), &[0xff, 0xff]).is_ok());
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("3"),
        );
        let body = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![],
        }
        .encode_to_vec();
        let e = interpret(http::StatusCode::TOO_MANY_REQUESTS, &h, &body).unwrap_err();
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
        assert!(e.to_string().contains("slow down"));
        let e = interpret(
            http::StatusCode::BAD_REQUEST,
            &http::HeaderMap::new(),
            b"bad things",
        )
        .unwrap_err();
        assert!(!e.retryable());
        assert!(e.to_string().contains("bad things"));
    }

    fn typed(media: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(media),
        );
        h
    }

    #[test]
    fn a_success_body_is_read_by_its_content_type() {
        let ok = |media, body: &[u8]| interpret(http::StatusCode::OK, &typed(media), body);
        // JSON, as protobuf's JSON mapping writes it (int64 as a string),
        // as a number, with the proto field names, for each signal.
        for body in [
            &br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}}"#[..],
            br#"{"partialSuccess":{"rejectedLogRecords":2,"errorMessage":"x"}}"#,
            br#"{"partial_success":{"rejected_data_points":"2","error_message":"x"}}"#,
        ] {
            let ack = ok("application/json; charset=utf-8", body).unwrap();
            assert_eq!((ack.rejected, ack.message.as_str()), (2, "x"));
        }
        assert_eq!(ok("application/json", b"{}").unwrap().rejected, 0);
        assert_eq!(
            ok("application/json", b"{\"partialSuccess\":{}}")
                .unwrap()
                .rejected,
            0
        );
        for bad in [&b"{"[..], br#"{"partialSuccess":{"rejectedSpans":"many"}}"#] {
            let e = ok("application/json", bad).unwrap_err();
            assert!(e.to_string().contains("JSON export response"), "{e}");
        }
        // Anything else says no more than the status.
        assert_eq!(ok("text/plain", b"OK").unwrap().rejected, 0);
        assert_eq!(
            ok("text/html", b"<html>accepted</html>").unwrap().rejected,
            0
        );
    }

    #[test]
    fn compressed_responses_are_read() {
        use crate::config::Compression;
        let gzip = |data: &[u8]| {
            let mut c = crate::otlp::compress::Compressor::new(Compression::Gzip, 1);
            c.compress(&[data], data.len(), 0).unwrap()
        };
        let encoded = |token| {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static(token),
            );
            h
        };
        // partial_success { rejected_spans: 2, error_message: "x" }, as a
        // proxy that compresses what it forwards would pass it on.
        let msg = gzip(&[0x0a, 0x05, 0x08, 0x02, 0x12, 0x01, b'x']);
        let ack = interpret(http::StatusCode::OK, &encoded("gzip"), &msg).unwrap();
        assert_eq!((ack.rejected, ack.message.as_str()), (2, "x"));
        let e = interpret(http::StatusCode::OK, &encoded("br"), &msg).unwrap_err();
        assert!(e.to_string().contains("\"br\""), "{e}");
        let bomb = gzip(&vec![0; 5 << 20]);
        let e = interpret(http::StatusCode::OK, &encoded("gzip"), &bomb).unwrap_err();
        assert!(e.to_string().contains("inflates past"), "{e}");
        // An error's message, compressed or not.
        let status = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![],
        }
        .encode_to_vec();
        for (h, body) in [(encoded("gzip"), gzip(&status)), (encoded("br"), status)] {
            let e = interpret(http::StatusCode::TOO_MANY_REQUESTS, &h, &body).unwrap_err();
            assert!(e.to_string().contains("slow down"), "{e}");
        }
    }
}
