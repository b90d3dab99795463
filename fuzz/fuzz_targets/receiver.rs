//! The embedded receiver's request handling on arbitrary bytes: the first
//! byte picks the signal, the encoding, the protocol (gRPC framing or an
//! OTLP/HTTP body) and the checking mode; the rest is the request body.
//! Properties: no panic, no abort, allocation bounded (libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` enforce it), every refusal a
//! clear error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otlpflow::otlp::grpc::{read_prefix, GRPC_PREFIX};
use otlpflow::sink::{check, Invalid, Verify};
use otlpflow::{Compression, Signal};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let signal = Signal::ALL[(mode % 3) as usize];
    let encoding = match (mode >> 2) % 3 {
        0 => Compression::None,
        1 => Compression::Gzip,
        _ => Compression::Zstd,
    };
    let verify = if mode & 0x40 == 0 {
        Verify::Full
    } else {
        Verify::Walk { sample_every: 1 }
    };
    let payload = if mode & 0x80 != 0 {
        // gRPC: the 5-byte prefix must declare exactly the rest.
        match read_prefix(body) {
            Some((_, len)) if body.len() == GRPC_PREFIX + len => &body[GRPC_PREFIX..],
            _ => return,
        }
    } else {
        body
    };
    match check(signal, encoding, payload, verify, true) {
        Ok((_records, raw)) => assert!(raw <= 64 << 20),
        Err(Invalid::Malformed(m)) | Err(Invalid::TooLarge(m)) => assert!(!m.is_empty()),
    }
});
