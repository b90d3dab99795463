//! OTLP/gRPC over cleartext HTTP/2 with `h2`: one connection per worker,
//! several streams in flight on it, gRPC message framing, `grpc-status` from
//! trailers (or a trailers-only response), `grpc-encoding`, `grpc-timeout`.
//!
//! References: gRPC over HTTP/2 (grpc/grpc `doc/PROTOCOL-HTTP2.md`) and the
//! OTLP specification (opentelemetry-proto `docs/specification.md`).

use base64::Engine;
use bytes::Bytes;
use prost::Message;

use super::h2conn::H2Conn;
use super::{parse_export_response, Ack, ExportError, ExportSettings};
use crate::otlp::grpc::{percent_decode, BASE64, GRPC_PREFIX};
use crate::otlp::status::{code, retry_info_delay, RpcStatus};

/// The OTLP/gRPC exporter of one worker. Lives on the worker's thread.
pub(crate) struct GrpcExporter {
    h2: H2Conn,
    uri: http::Uri,
    encoding: Option<&'static str>,
    timeout_header: String,
    headers: crate::config::Headers,
}

impl GrpcExporter {
    pub fn new(s: &ExportSettings) -> GrpcExporter {
        let uri = format!(
            "{}://{}{}",
            s.endpoint.scheme,
            s.endpoint.authority,
            crate::otlp::grpc_path(s.signal)
        );
        GrpcExporter {
            h2: H2Conn::new(s.connector.clone(), s.pool),
            uri: uri
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("http://localhost/")),
            encoding: s.compression.token(),
            headers: s.headers.clone(),
            timeout_header: format!("{}m", s.timeout.as_millis().clamp(1, 99_999_999)),
        }
    }

    /// Sends one framed gRPC message (`chunks`, the first starting with the
    /// 5-byte prefix) and waits for the status.
    pub async fn send(&self, chunks: &[Bytes]) -> Result<Ack, ExportError> {
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
        let resp = self.h2.round_trip(req, chunks).await?;
        if resp.parts.status != http::StatusCode::OK {
            let retry_after = resp
                .parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    crate::otlp::status::parse_retry_after(v, std::time::SystemTime::now())
                });
            return Err(ExportError::Status {
                code: http_to_grpc(resp.parts.status.as_u16()),
                message: format!("HTTP status {}", resp.parts.status),
                retry_after,
            });
        }
        // A trailers-only response carries grpc-status in the headers.
        if let Some(status) = grpc_status(&resp.parts.headers)? {
            return status.map(|()| Ack::default());
        }
        let trailers = resp.trailers.ok_or_else(|| {
            ExportError::Protocol("no grpc-status: response has no trailers".into())
        })?;
        match grpc_status(&trailers)? {
            Some(Ok(())) => parse_response(&resp.body),
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
    // google.rpc.Status with details, base64 (padding optional).
    let retry_after = headers
        .get("grpc-status-details-bin")
        .and_then(|v| BASE64.decode(v.as_bytes()).ok())
        .and_then(|raw| RpcStatus::decode(&raw[..]).ok())
        .and_then(|st| retry_info_delay(&st));
    Ok(Some(Err(ExportError::Status {
        code,
        message,
        retry_after,
    })))
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
    parse_export_response(msg)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn http_statuses_map_to_grpc_codes() {
        assert_eq!(http_to_grpc(503), code::UNAVAILABLE);
        assert_eq!(http_to_grpc(404), code::UNIMPLEMENTED);
    }

    #[test]
    fn retry_info_in_status_details_with_or_without_padding() {
        use crate::otlp::status::{RetryInfo, RpcAny, RpcDuration, RETRY_INFO_TYPE};
        let st = RpcStatus {
            code: 8,
            message: "busy".into(),
            details: vec![RpcAny {
                type_url: RETRY_INFO_TYPE.into(),
                value: RetryInfo {
                    retry_delay: Some(RpcDuration {
                        seconds: 0,
                        nanos: 250_000_000,
                    }),
                }
                .encode_to_vec(),
            }],
        };
        let raw = st.encode_to_vec();
        for encoded in [
            base64::engine::general_purpose::STANDARD.encode(&raw),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw),
        ] {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-status", http::HeaderValue::from_static("8"));
            h.insert("grpc-status-details-bin", encoded.parse().unwrap());
            let e = grpc_status(&h).unwrap().unwrap().unwrap_err();
            assert_eq!(e.retry_after(), Some(std::time::Duration::from_millis(250)));
            assert!(e.retryable());
        }
    }
}
