//! gRPC message framing (grpc/grpc `doc/PROTOCOL-HTTP2.md`): the 5-byte
//! length prefix, `-bin` metadata in base64, and `grpc-message`'s
//! percent-encoding. Plain functions over bytes, used by both sides.

/// Base64 of `-bin` metadata: gRPC allows it with or without padding.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// gRPC's length-prefixed message header: a compressed flag and a 4-byte
/// big-endian length.
pub const GRPC_PREFIX: usize = 5;

/// Writes the prefix of a message of `len` bytes into `out` (at least
/// [`GRPC_PREFIX`] bytes): the compressed flag, then the length, big-endian.
pub fn write_prefix(out: &mut [u8], len: usize, compressed: bool) {
    out[0] = compressed as u8;
    out[1..GRPC_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
}

/// Reads a prefix: the compressed flag and the message length; `None` if
/// fewer than [`GRPC_PREFIX`] bytes are given.
pub fn read_prefix(data: &[u8]) -> Option<(bool, usize)> {
    let p = data.get(..GRPC_PREFIX)?;
    Some((
        p[0] != 0,
        u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize,
    ))
}

/// Decodes `grpc-message`'s percent-encoding; invalid sequences stay as-is.
pub(crate) fn percent_decode(b: &[u8]) -> String {
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
    fn prefixes_round_trip() {
        let mut p = [0u8; GRPC_PREFIX];
        write_prefix(&mut p, 70_000, true);
        assert_eq!(read_prefix(&p), Some((true, 70_000)));
        assert_eq!(read_prefix(&p[..4]), None);
    }
}
