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
use super::{decode_response, parse_export_response, Ack, ExportError, ExportSettings};
use crate::config::Compression;
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
        GrpcExporter {
            h2: H2Conn::new(s.connector.clone(), s.pool),
            uri: s.uri.clone(),
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
        read_answer(
            resp.parts.status,
            &resp.parts.headers,
            resp.trailers.as_ref(),
            &resp.body,
        )
    }
}

/// Turns a gRPC response (its HTTP status, headers, trailers and body) into
/// an acknowledgement or an error.
pub(crate) fn read_answer(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    trailers: Option<&http::HeaderMap>,
    body: &[u8],
) -> Result<Ack, ExportError> {
    if status != http::StatusCode::OK {
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::otlp::status::parse_retry_after(v, std::time::SystemTime::now()));
        return Err(ExportError::Status {
            code: http_to_grpc(status.as_u16()),
            message: format!("HTTP status {status}"),
            retry_after,
        });
    }
    // A trailers-only response carries grpc-status in the headers.
    if let Some(status) = grpc_status(headers)? {
        return status.map(|()| Ack::default());
    }
    let trailers = trailers
        .ok_or_else(|| ExportError::Protocol("no grpc-status: response has no trailers".into()))?;
    match grpc_status(trailers)? {
        Some(Ok(())) => parse_response(body, headers.get("grpc-encoding")),
        Some(Err(e)) => Err(e),
        None => Err(ExportError::Protocol(
            "trailers carry no grpc-status".into(),
        )),
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
/// `ExportTraceServiceResponse` with `partial_success`, compressed if its
/// flag says so with the response's `grpc-encoding`.
fn parse_response(data: &[u8], encoding: Option<&http::HeaderValue>) -> Result<Ack, ExportError> {
    if data.is_empty() {
        return Ok(Ack::default());
    }
    if data.len() < GRPC_PREFIX {
        return Err(ExportError::Protocol("truncated gRPC message".into()));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let msg = data
        .get(GRPC_PREFIX..GRPC_PREFIX + len)
        .ok_or_else(|| ExportError::Protocol("gRPC message length exceeds the body".into()))?;
    match (data[0], encoding.map(|v| v.to_str().unwrap_or("?"))) {
        (0, _) => parse_export_response(msg),
        (1, Some(token)) if Compression::from_token(token) != Some(Compression::None) => {
            parse_export_response(&decode_response(token, msg)?)
        }
        (1, _) => Err(ExportError::Protocol(
            "compressed gRPC message without grpc-encoding".into(),
        )),
        (flag, _) => Err(ExportError::Protocol(format!(
            "gRPC message flag {flag} is neither 0 nor 1"
        ))),
    }
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

    /// `msg` in a gRPC frame with compressed flag `flag`.
    fn framed(flag: u8, msg: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        f.extend_from_slice(msg);
        f
    }

    /// `data` compressed as `kind` at level 1.
    fn compressed(kind: Compression, data: &[u8]) -> Vec<u8> {
        let mut c = crate::otlp::compress::Compressor::new(kind, 1);
        c.compress(&[data], data.len(), 0).unwrap()
    }

    #[test]
    fn responses_parse_or_error_without_panic() {
        assert_eq!(parse_response(&[], None).unwrap().rejected, 0);
        assert!(parse_response(&[0, 0, 0], None).is_err());
        assert!(parse_response(&[0, 0, 0, 0, 9, 1], None).is_err());
        assert!(parse_response(&[1, 0, 0, 0, 0], None).is_err());
        // partial_success { rejected_spans: 3, error_message: "x" }
        let msg = [0x0a, 0x05, 0x08, 0x03, 0x12, 0x01, b'x'];
        let ack = parse_response(&framed(0, &msg), None).unwrap();
        assert_eq!((ack.rejected, ack.message.as_str()), (3, "x"));
    }

    #[test]
    fn compressed_responses_are_read_within_the_limit() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let warning = "attribute dropped; ".repeat(40);
        let msg = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: warning.clone(),
            }),
        }
        .encode_to_vec();
        let header = http::HeaderValue::from_static;
        // What grpc-go sends back for a request it got compressed, and
        // grpcio when its server compresses: flag 1, grpc-encoding.
        for (kind, token) in [(Compression::Gzip, "gzip"), (Compression::Zstd, "ZSTD")] {
            let body = framed(1, &compressed(kind, &msg));
            let ack = parse_response(&body, Some(&header(token))).unwrap();
            assert_eq!((ack.rejected, ack.message), (2, warning.clone()), "{token}");
        }
        // Flag 0 is read as it is, whatever the header says.
        let ack = parse_response(&framed(0, &msg), Some(&header("gzip"))).unwrap();
        assert_eq!(ack.rejected, 2);
        // Refused: flag 1 without an encoding, or with identity or one this
        // crate does not decode; a flag that is neither 0 nor 1; a body
        // that is not what its encoding says; and a bomb, 5 MiB of zeros
        // in 5 KiB of zstd, past the 4 MiB a response may take.
        let zstd = framed(1, &compressed(Compression::Zstd, &msg));
        let bomb = framed(1, &compressed(Compression::Zstd, &vec![0; 5 << 20]));
        assert!(bomb.len() < 8 << 10, "{}", bomb.len());
        for (body, token, error) in [
            (&zstd, None, "without grpc-encoding"),
            (&zstd, Some("identity"), "without grpc-encoding"),
            (&zstd, Some("br"), "encoded as \"br\""),
            (&framed(2, &msg), None, "flag 2"),
            (&zstd, Some("gzip"), "gzip response does not decode"),
            (&bomb, Some("zstd"), "inflates past 4194304 bytes"),
        ] {
            let e = parse_response(body, token.map(header).as_ref()).unwrap_err();
            assert!(
                matches!(&e, ExportError::Protocol(m) if m.contains(error)),
                "{token:?}: {e}"
            );
        }
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
