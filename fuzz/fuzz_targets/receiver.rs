//! The embedded receiver's request handling on arbitrary bytes: the first
//! byte picks the signal, the encoding, the protocol (gRPC framing or an
//! OTLP/HTTP body) and the checking mode; the rest is the request body.
//! Properties: no panic, no abort, allocation bounded (libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` enforce it), nothing accepted past
//! the limits, every refusal a clear error.
//!
//! The checks run with limits of 64 KiB a message and 1 MiB a full decode
//! rather than the receiver's 64 and 256 MiB (`Limits::RECEIVER`): the
//! same code against a smaller number (the seeds are at most 2 KB). With
//! the receiver's own, the corpus soon holds compression bombs that inflate
//! to tens of MiB on every run, through instrumented zlib, and the fuzzer
//! managed about 130 runs a second.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otlpflow::otlp::grpc::{read_prefix, GRPC_PREFIX};
use otlpflow::sink::{check, Checking, Invalid, Limits, Verify};
use otlpflow::{Compression, Signal};

const LIMITS: Limits = Limits {
    max_message: 64 << 10,
    max_decoded: 1 << 20,
};

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
    let how = Checking {
        verify,
        sample: true,
        limits: LIMITS,
    };
    match check(signal, encoding, payload, how) {
        Ok((_records, raw)) => assert!(raw <= LIMITS.max_message),
        Err(Invalid::Malformed(m)) | Err(Invalid::TooLarge(m)) => assert!(!m.is_empty()),
    }
});
