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
#[inline]
pub(crate) fn id_len(f: u32, id: &[u8]) -> usize {
    if id.iter().all(|b| *b == 0) {
        0
    } else {
        wire::len_field(f, id.len())
    }
}
#[inline]
pub(crate) fn put_id(w: &mut Writer<'_>, f: u32, id: &[u8]) {
    if !id.iter().all(|b| *b == 0) {
        w.bytes_field(f, id);
    }
}
