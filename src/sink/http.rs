//! The receiver's OTLP/HTTP side: hyper serving HTTP/1.1 and cleartext
//! HTTP/2 on one port, `POST /v1/<signal>` with protobuf bodies.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;

use super::held::Held;
use super::request::{busy_message, process, response_message, Outcome, Refusal, BUSY_RETRY};
use super::{SinkState, MAX_MESSAGE};
use crate::config::Compression;
use crate::otlp::signal_of_http_path as http_signal;
use crate::otlp::status::code::RESOURCE_EXHAUSTED;
use crate::otlp::status::RpcStatus;

/// Serves one connection (HTTP/1.1 or h2c, detected).
pub(super) async fn serve_connection(io: Box<dyn crate::tls::IoStream>, shared: Arc<SinkState>) {
    let header_timeout = shared.opts.header_timeout;
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { http_request(req, &shared).await }
    });
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    // A client that sends half a request head is dropped after
    // `header_timeout`; header blocks are bounded on both versions.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(super::MAX_HEADER_BYTES.max(8192));
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(super::MAX_HEADER_BYTES as u32)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20);
    let _ = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

type HttpResponse = http::Response<Full<Bytes>>;

fn http_response(status: u16, body: Vec<u8>, retry_after: Option<String>) -> HttpResponse {
    let mut b = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf");
    if let Some(ra) = retry_after {
        b = b.header(http::header::RETRY_AFTER, ra);
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

fn http_error(
    status: u16,
    code: i32,
    message: String,
    retry_after: Option<String>,
) -> HttpResponse {
    let body = RpcStatus {
        code,
        message,
        details: vec![],
    }
    .encode_to_vec();
    http_response(status, body, retry_after)
}

async fn http_request(
    req: http::Request<hyper::body::Incoming>,
    shared: &SinkState,
) -> Result<HttpResponse, std::io::Error> {
    let (parts, body) = req.into_parts();
    if shared.opts.keep_requests {
        *shared.last_http_target.lock() = parts.uri.path_and_query().map(|p| p.to_string());
    }
    if parts.version == http::Version::HTTP_11 && parts.uri.scheme().is_some() {
        // An origin server is asked in origin-form (RFC 9112 §3.2.1); many
        // (Python's http.server among them) refuse the absolute form.
        shared.counters.errors.fetch_add(1, Relaxed);
        return Ok(http_error(
            400,
            3,
            "absolute-form request target sent to an origin server".into(),
            None,
        ));
    }
    let Some(signal) = http_signal(parts.uri.path()) else {
        shared.counters.errors.fetch_add(1, Relaxed);
        return Ok(http_error(
            404,
            12,
            format!("no such path {}", parts.uri.path()),
            None,
        ));
    };
    if parts.method != http::Method::POST {
        shared.counters.errors.fetch_add(1, Relaxed);
        return Ok(http_error(405, 12, "use POST".into(), None));
    }
    let ctype = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/x-protobuf") {
        shared.counters.errors.fetch_add(1, Relaxed);
        return Ok(http_error(
            415,
            3,
            format!("unsupported content-type {ctype:?}"),
            None,
        ));
    }
    let token = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let Some(encoding) = token.map_or(Some(Compression::None), Compression::from_token) else {
        shared.counters.errors.fetch_add(1, Relaxed);
        return Ok(http_error(
            415,
            3,
            format!("unsupported content-encoding {}", token.unwrap_or_default()),
            None,
        ));
    };
    let mut held = Held::new(&shared.buffered, shared.opts.max_buffered_bytes);
    let data = match gather(body, shared, &mut held).await {
        Ok(data) => data,
        Err(refusal) => return Ok(refusal),
    };
    let (outcome, _) = process(shared, signal, &parts.headers, encoding, &data, data.len()).await;
    Ok(match outcome {
        Outcome::Accept { rejected, message } => {
            http_response(200, response_message(rejected, message), None)
        }
        Outcome::Refuse(Refusal::Reset) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected reset",
            ))
        }
        Outcome::Refuse(Refusal::TooLarge(message)) => http_error(413, 8, message, None),
        Outcome::Refuse(Refusal::Redirect { status, location }) => {
            let mut resp = http_response(status, Vec::new(), None);
            if let Ok(v) = http::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            resp
        }
        Outcome::Refuse(Refusal::Http {
            status,
            message,
            retry_after,
        }) => http_error(status, 14, message, retry_after),
        Outcome::Refuse(Refusal::Grpc { code, message, .. }) => {
            let status = match code {
                3 => 400,
                // RESOURCE_EXHAUSTED is HTTP's Too Many Requests.
                8 => 429,
                _ => 500,
            };
            http_error(status, code as i32, message, None)
        }
    })
}

/// Gathers a request body, at most `MAX_MESSAGE` bytes and within the
/// receiver's bound on bytes held (`held`), each part arriving within the
/// body timeout; or the answer refusing it. A body whose length is known
/// (`Content-Length`) holds that length from the start, so a body let in
/// has room to finish; one sent in chunks holds what it grows by.
async fn gather(
    mut body: hyper::body::Incoming,
    shared: &SinkState,
    held: &mut Held<'_>,
) -> Result<Vec<u8>, HttpResponse> {
    // Past the bound on bytes held, a body could never be let in: too
    // large, not a reason to retry.
    let limit = MAX_MESSAGE.min(shared.opts.max_buffered_bytes);
    let too_large = || {
        shared.counters.errors.fetch_add(1, Relaxed);
        http_error(
            413,
            3,
            format!("body over the limit of {limit} bytes"),
            None,
        )
    };
    let busy = || {
        shared.counters.throttled.fetch_add(1, Relaxed);
        http_error(
            429,
            RESOURCE_EXHAUSTED as i32,
            busy_message(shared),
            Some(BUSY_RETRY.as_secs().to_string()),
        )
    };
    let mut data = Vec::new();
    if let Some(len) = hyper::body::Body::size_hint(&body).exact() {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > limit {
            return Err(too_large());
        }
        if !held.take(len) {
            return Err(busy());
        }
        data.reserve_exact(len);
    }
    loop {
        let Ok(next) = tokio::time::timeout(shared.opts.body_timeout, body.frame()).await else {
            shared.counters.errors.fetch_add(1, Relaxed);
            return Err(http_error(
                408,
                4,
                "the request body stopped arriving".into(),
                None,
            ));
        };
        let Some(frame) = next else {
            return Ok(data);
        };
        let frame = frame.map_err(|e| {
            shared.counters.errors.fetch_add(1, Relaxed);
            http_error(400, 3, format!("reading body: {e}"), None)
        })?;
        let Ok(chunk) = frame.into_data() else {
            // Trailers carry nothing OTLP/HTTP reads.
            continue;
        };
        if data.len() + chunk.len() > limit {
            return Err(too_large());
        }
        // What the buffer grows by is held (nothing, when its length was
        // known), whatever part of it is used.
        let before = data.capacity();
        data.reserve(chunk.len());
        if !held.take(data.capacity().saturating_sub(before)) {
            return Err(busy());
        }
        data.extend_from_slice(&chunk);
    }
}
