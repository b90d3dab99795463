//! The form an export request takes on the wire: gRPC-framed (the 5-byte
//! length prefix) or a bare OTLP/HTTP body, and compressed with what. A
//! request the disk spool kept is replayed by whatever settings the
//! pipeline has then, which may differ from those it was written with (a
//! new release moved from gRPC to OTLP/HTTP, or from zstd to gzip);
//! `convert` turns it into the form the endpoint now expects.
//!
//! The bytes say what they are, so the spool's format needs no field for
//! it: a gRPC message is a flag byte of 0 or 1 and a big-endian length
//! equal to what follows; a gzip body starts with `1f 8b` (RFC 1952), a
//! zstd frame with `28 b5 2f fd` (RFC 8878); and an uncompressed export
//! request, as otlpflow writes it, starts with field 1's key, `0a`.

use crate::config::{Compression, Protocol};

use super::compress::{decompress, Compressor};
use super::grpc::{read_prefix, write_prefix, GRPC_PREFIX};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// How a request's bytes are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    /// gRPC framing, or none (OTLP/HTTP).
    pub protocol: Protocol,
    /// The body's compression (for gRPC, the message's).
    pub compression: Compression,
}

impl Form {
    /// The form of `request`, as otlpflow frames and compresses requests.
    pub fn of(request: &[u8]) -> Form {
        let (protocol, body) = match read_prefix(request) {
            Some((_, len))
                if request[0] <= 1 && request.len().checked_sub(GRPC_PREFIX) == Some(len) =>
            {
                (Protocol::Grpc, &request[GRPC_PREFIX..])
            }
            _ => (Protocol::HttpProtobuf, request),
        };
        // A gRPC message whose flag says uncompressed is so, whatever its
        // first bytes.
        let compression = if protocol == Protocol::Grpc && request[0] == 0 {
            Compression::None
        } else if body.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else if body.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        };
        Form {
            protocol,
            compression,
        }
    }
}

/// `request` in form `to` (compressed at `level`), or `None` if it already
/// is. What it holds is inflated to at most `limit` bytes.
pub fn convert(
    request: &[u8],
    to: Form,
    level: i32,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let from = Form::of(request);
    if from == to {
        return Ok(None);
    }
    let body = match from.protocol {
        Protocol::Grpc => &request[GRPC_PREFIX..],
        Protocol::HttpProtobuf => request,
    };
    let message = decompress(from.compression, body, limit)?;
    let prefix = match to.protocol {
        Protocol::Grpc => GRPC_PREFIX,
        Protocol::HttpProtobuf => 0,
    };
    let mut out =
        Compressor::new(to.compression, level).compress(&[&message], message.len(), prefix)?;
    if prefix > 0 {
        let len = out.len() - prefix;
        write_prefix(&mut out, len, to.compression != Compression::None);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export request's first bytes as otlpflow encodes them.
    fn message() -> Vec<u8> {
        let mut m = vec![0x0a, 0x7d];
        m.extend((0..125u8).map(|i| i % 7));
        m
    }

    const ALL: [Form; 6] = {
        use Compression::*;
        use Protocol::*;
        [
            Form {
                protocol: Grpc,
                compression: None,
            },
            Form {
                protocol: Grpc,
                compression: Gzip,
            },
            Form {
                protocol: Grpc,
                compression: Zstd,
            },
            Form {
                protocol: HttpProtobuf,
                compression: None,
            },
            Form {
                protocol: HttpProtobuf,
                compression: Gzip,
            },
            Form {
                protocol: HttpProtobuf,
                compression: Zstd,
            },
        ]
    };

    #[test]
    fn every_form_is_recognised_and_converts_to_every_other() {
        let plain = Form {
            protocol: Protocol::HttpProtobuf,
            compression: Compression::None,
        };
        for from in ALL {
            let request = convert(&message(), from, 3, 1 << 20)
                .unwrap()
                .unwrap_or_else(message);
            assert_eq!(Form::of(&request), from, "{from:?}");
            for to in ALL {
                let converted = convert(&request, to, 1, 1 << 20).unwrap();
                assert_eq!(converted.is_none(), from == to, "{from:?} -> {to:?}");
                let converted = converted.unwrap_or_else(|| request.clone());
                assert_eq!(Form::of(&converted), to, "{from:?} -> {to:?}");
                let back = convert(&converted, plain, 1, 1 << 20).unwrap();
                assert_eq!(back.unwrap_or(converted), message(), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn what_inflates_past_the_limit_is_refused() {
        let zeros = vec![0u8; 1 << 20];
        let zstd = Compressor::new(Compression::Zstd, 1)
            .compress(&[&zeros], zeros.len(), 0)
            .unwrap();
        let plain = Form {
            protocol: Protocol::HttpProtobuf,
            compression: Compression::None,
        };
        let e = convert(&zstd, plain, 1, 64 << 10).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
    }
}
