//! `AttributeSet`: an attribute list encoded once and reused by every span,
//! log record and metric point that carries it, so that the hot path copies
//! its bytes instead of walking and encoding each key and value again.
//!
//! The set is stored as the repeated `KeyValue` field it becomes on the
//! wire. Spans, events, links, log records and data points number their
//! attribute field differently (9, 3, 4, 6, 7, 9, 1), all below 16, so a
//! field key is one byte: the set is encoded once under one of them and the
//! one-byte keys are rewritten for another field while copying.

use super::value::{attributes_len, encode_attributes, KeyValue};
use super::wire::{self, Writer};

/// The field number the bytes are kept under (span attributes).
const STORED_FIELD: u32 = 9;

/// An attribute list encoded once, reusable across spans, log records and
/// metric points (see `Span::attribute_set` and friends). Its attributes come
/// before the record's own on the wire; it owns its bytes and is `Send +
/// Sync`, so one set may serve many threads.
#[derive(Clone, PartialEq, Eq)]
pub struct AttributeSet {
    /// The attributes as a repeated `KeyValue` field numbered
    /// `STORED_FIELD`.
    encoded: Box<[u8]>,
    /// Where each attribute's one-byte field key sits in `encoded`.
    keys: Box<[u32]>,
}

impl AttributeSet {
    /// Encodes `attributes` once. Keys and values are copied; the borrowed
    /// list may be dropped afterwards.
    pub fn new(attributes: &[KeyValue<'_>]) -> AttributeSet {
        let len = attributes_len(STORED_FIELD, attributes);
        let mut encoded = vec![0u8; len].into_boxed_slice();
        encode_attributes(&mut Writer::new(&mut encoded), STORED_FIELD, attributes);
        // Walk the field we wrote to find each key: key byte, length varint,
        // body.
        let mut keys = Vec::with_capacity(attributes.len());
        let mut pos = 0;
        while pos < encoded.len() {
            keys.push(pos as u32);
            let (body, n) = read_varint(&encoded[pos + 1..]);
            pos += 1 + n + body as usize;
        }
        debug_assert_eq!(keys.len(), attributes.len());
        AttributeSet {
            encoded,
            keys: keys.into_boxed_slice(),
        }
    }

    /// An empty set.
    pub fn empty() -> AttributeSet {
        AttributeSet::new(&[])
    }

    /// The number of attributes in the set.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no attributes.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes the set takes as a repeated field (whatever its number, below
    /// 16).
    #[inline]
    pub(crate) fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// Writes the set as a repeated `KeyValue` field numbered `field`
    /// (below 16).
    #[inline]
    pub(crate) fn encode(&self, w: &mut Writer<'_>, field: u32) {
        debug_assert!(field < 16);
        let start = w.position();
        w.raw(&self.encoded);
        if field != STORED_FIELD {
            let key = ((field << 3) | wire::LEN) as u8;
            for &k in self.keys.iter() {
                w.patch(start + k as usize, key);
            }
        }
    }
}

/// An optional set's size as a repeated field.
#[inline]
pub(crate) fn set_len(set: Option<&AttributeSet>) -> usize {
    set.map_or(0, AttributeSet::encoded_len)
}

/// Writes an optional set as a repeated field numbered `field`.
#[inline]
pub(crate) fn encode_set(w: &mut Writer<'_>, field: u32, set: Option<&AttributeSet>) {
    if let Some(s) = set {
        s.encode(w, field);
    }
}

impl Default for AttributeSet {
    fn default() -> Self {
        AttributeSet::empty()
    }
}

impl std::fmt::Debug for AttributeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttributeSet")
            .field("attributes", &self.len())
            .field("encoded_bytes", &self.encoded.len())
            .finish()
    }
}

/// Reads a varint our own encoder wrote: `(value, bytes)`.
fn read_varint(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    unreachable!("our encoder writes complete varints")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    #[test]
    fn a_set_encodes_as_its_attributes_would_under_every_field() {
        // A value longer than 127 bytes: its lengths take two varint bytes.
        let long = "x".repeat(300);
        let list = [
            KeyValue::new("http.request.method", Value::Str("GET")),
            KeyValue::new("long", Value::Str(&long)),
            KeyValue::new("n", Value::I64(-5)),
            KeyValue::new("", Value::Array(&[Value::Bool(true), Value::F64(1.5)])),
        ];
        let set = AttributeSet::new(&list);
        assert_eq!(set.len(), 4);
        for field in [1u32, 3, 4, 6, 7, 9, 15] {
            let mut want = vec![0u8; attributes_len(field, &list)];
            encode_attributes(&mut Writer::new(&mut want), field, &list);
            let mut got = vec![0u8; set.encoded_len()];
            set.encode(&mut Writer::new(&mut got), field);
            assert_eq!(got, want, "field {field}");
        }
        assert!(AttributeSet::empty().is_empty());
        assert_eq!(AttributeSet::empty().encoded_len(), 0);
    }
}
