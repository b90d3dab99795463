//! The exporter reading a receiver's answer, on arbitrary bytes: the first
//! bytes pick the protocol, the HTTP status, where `grpc-status` goes, the
//! body's encoding header, and give `grpc-status-details-bin` and
//! `Retry-After` (and, over OTLP/HTTP, the top bits of the code byte pick
//! the `Content-Type`: none, protobuf, JSON or text); the rest is the body
//! (a gRPC frame, or an OTLP/HTTP body), compressed or not. Properties: no panic, no abort, allocation
//! bounded (a compressed answer inflates to at most 4 MiB; libFuzzer's
//! `-malloc_limit_mb` enforces it).
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use otlpflow::__private::read_response;

const STATUSES: [u16; 8] = [200, 200, 204, 400, 429, 500, 503, 302];
const ENCODINGS: [Option<&str>; 8] = [
    None,
    None,
    Some("gzip"),
    Some("zstd"),
    Some("identity"),
    Some("ZSTD"),
    Some("br"),
    Some("gzip, zstd"),
];

const MEDIA: [Option<&str>; 8] = [
    None,
    Some("application/x-protobuf"),
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    Some("application/protobuf"),
    Some(""),
    Some("APPLICATION/JSON"),
];

fuzz_target!(|data: &[u8]| {
    let [mode, status, code, details_len, retry_len, rest @ ..] = data else {
        return;
    };
    let (details, rest) = rest.split_at((*details_len as usize).min(rest.len()));
    let (retry_after, body) = rest.split_at((*retry_len as usize).min(rest.len()));
    let grpc = mode & 1 == 1;
    let mut headers = HeaderMap::new();
    let mut trailers = HeaderMap::new();
    if let Some(enc) = ENCODINGS[(mode >> 1 & 7) as usize] {
        let name = if grpc {
            "grpc-encoding"
        } else {
            "content-encoding"
        };
        headers.insert(name, HeaderValue::from_static(enc));
    }
    // grpc-status in the headers (trailers-only), in the trailers, or nowhere.
    let status_at = match mode >> 4 & 3 {
        0 => None,
        1 => Some(&mut headers),
        _ => Some(&mut trailers),
    };
    if let Some(h) = status_at {
        h.insert("grpc-status", HeaderValue::from(u32::from(code % 17)));
        h.insert("grpc-message", HeaderValue::from_static("a%20message%zz"));
        if let Ok(v) = HeaderValue::from_str(&base64(details)) {
            h.insert("grpc-status-details-bin", v);
        }
    }
    if let (false, Some(media)) = (grpc, MEDIA[(code >> 5) as usize]) {
        headers.insert("content-type", HeaderValue::from_static(media));
    }
    if let Ok(v) = HeaderValue::from_bytes(retry_after) {
        headers.insert("retry-after", v);
    }
    let trailers = (mode & 0x40 == 0).then_some(&trailers);
    let status = if mode & 0x80 == 0 {
        STATUSES[(status & 7) as usize]
    } else {
        u16::from(*status) * 4
    };
    let _ = read_response(grpc, status, &headers, trailers, body);
});

/// Standard base64 without padding (gRPC accepts both).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - c.len()));
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
