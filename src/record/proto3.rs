//! Proto3 leaves fields at their default value off the wire. These helpers
//! size and write a field only when it differs from its default; every
//! record encoder (spans, log records, data points) uses them, so that all
//! of them encode as prost does.

use super::wire::{self, Writer};

#[inline]
pub(crate) fn str_len(f: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        wire::len_field(f, s.len())
    }
}
#[inline]
pub(crate) fn uint_len(f: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        wire::varint_field(f, v)
    }
}
#[inline]
pub(crate) fn fixed64_len(f: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        wire::key_len(f) + 8
    }
}
#[inline]
pub(crate) fn fixed32_len(f: u32, v: u32) -> usize {
    if v == 0 {
        0
    } else {
        wire::key_len(f) + 4
    }
}
#[inline]
pub(crate) fn put_str(w: &mut Writer<'_>, f: u32, s: &str) {
    if !s.is_empty() {
        w.bytes_field(f, s.as_bytes());
    }
}
#[inline]
pub(crate) fn put_uint(w: &mut Writer<'_>, f: u32, v: u64) {
    if v != 0 {
        w.varint_field(f, v);
    }
}
#[inline]
pub(crate) fn put_fixed64(w: &mut Writer<'_>, f: u32, v: u64) {
    if v != 0 {
        w.fixed64_field(f, v);
    }
}
#[inline]
pub(crate) fn put_fixed32(w: &mut Writer<'_>, f: u32, v: u32) {
    if v != 0 {
        w.fixed32_field(f, v);
    }
}
/// Whether a trace or span id is all zero (absent), compared a word at a
/// time: a byte loop here cost more than the rest of the id's encoding.
#[inline]
pub(crate) fn zero_id<const N: usize>(id: &[u8; N]) -> bool {
    id.chunks(8).all(|c| {
        let mut word = [0u8; 8];
        word[..c.len()].copy_from_slice(c);
        u64::from_ne_bytes(word) == 0
    })
}
#[inline]
pub(crate) fn id_len<const N: usize>(f: u32, id: &[u8; N]) -> usize {
    if zero_id(id) {
        0
    } else {
        wire::len_field(f, N)
    }
}
#[inline]
pub(crate) fn put_id<const N: usize>(w: &mut Writer<'_>, f: u32, id: &[u8; N]) {
    if !zero_id(id) {
        w.id_field(f, id);
    }
}
