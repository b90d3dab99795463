//! Protocol Buffers wire format: the few primitives the hot path needs to
//! write OTLP messages straight into a ring record, and the sizes that let it
//! claim exactly the right number of bytes first.
//!
//! Reference: <https://protobuf.dev/programming-guides/encoding/>. A field
//! key is `(field_number << 3) | wire_type`; length-delimited fields carry a
//! varint length before their bytes.

/// Wire type of varint fields (int64, uint32, bool, enum).
pub const VARINT: u32 = 0;
/// Wire type of fixed 64-bit fields (fixed64, double).
pub const FIXED64: u32 = 1;
/// Wire type of length-delimited fields (string, bytes, messages, packed).
pub const LEN: u32 = 2;
/// Wire type of fixed 32-bit fields (fixed32, float).
pub const FIXED32: u32 = 5;

/// Bytes a varint of `v` takes (1..=10).
#[inline]
pub const fn varint_len(v: u64) -> usize {
    // Most lengths on the hot path are small: skip the arithmetic.
    if v < 0x80 {
        return 1;
    }
    // Each byte carries 7 bits; `| 1` makes zero take one byte. For 1 to
    // 64 bits, `(9 * bits + 64) / 64` is `bits.div_ceil(7)` in a multiply
    // by 9 and a shift, where the division by 7 took two multiplies and a
    // compare on the attribute encoder's critical path.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    (9 * bits + 64) / 64
}

/// Bytes a field key takes.
#[inline]
pub const fn key_len(field: u32) -> usize {
    varint_len((field as u64) << 3)
}

/// Bytes a length-delimited field with a body of `body` bytes takes.
#[inline]
pub const fn len_field(field: u32, body: usize) -> usize {
    key_len(field) + varint_len(body as u64) + body
}

/// Bytes a varint field takes.
#[inline]
pub const fn varint_field(field: u32, v: u64) -> usize {
    key_len(field) + varint_len(v)
}

/// A writer over a slice: either one whose exact size was computed
/// beforehand ([`Writer::new`]: writing past its end is a bug in a size
/// function, and panics), or scratch space that may turn out too small
/// (see [`write_into`]: writing past its end stops the writing, and the
/// caller is told). Every write is bounds-checked; the module has no
/// `unsafe`.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    /// Bytes written; past `buf.len()` once a scratch writer overflowed.
    pos: usize,
    scratch: bool,
}

/// A write did not fit: panics for an exactly sized buffer, or returns the
/// position that marks a scratch writer overflowed. A free function, given
/// values rather than the writer: a call taking `&mut Writer` would let its
/// address escape, and keep it in memory for the whole encoder.
#[cold]
#[inline(never)]
fn overflowed(scratch: bool, pos: usize, len: usize) -> usize {
    if !scratch {
        panic!("encoder wrote past its buffer at {pos} of {len} bytes: the size pass and the encoder disagree");
    }
    len + 1
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`, which the caller sized
    /// exactly.
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            pos: 0,
            scratch: false,
        }
    }

    /// The bytes written, or `None` if they did not all fit.
    #[inline]
    fn written(&self) -> Option<usize> {
        (self.pos <= self.buf.len()).then_some(self.pos)
    }

    /// Writes one byte.
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(d) => {
                *d = b;
                self.pos += 1;
            }
            None => self.pos = overflowed(self.scratch, self.pos, self.buf.len()),
        }
    }

    /// Bytes written so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte of the buffer has been written.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Overwrites one byte already written, at `at` (nothing, past the end
    /// of an overflowed scratch writer).
    #[inline]
    pub fn patch(&mut self, at: usize, byte: u8) {
        debug_assert!(at < self.pos);
        if let Some(b) = self.buf.get_mut(at) {
            *b = byte;
        }
    }

    /// Writes a varint.
    #[inline]
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    /// Writes a field key.
    #[inline]
    pub fn key(&mut self, field: u32, wire_type: u32) {
        let k = (field << 3) | wire_type;
        if k < 0x80 {
            self.byte(k as u8);
        } else {
            self.varint(k as u64);
        }
    }

    /// Writes raw bytes.
    #[inline]
    pub fn raw(&mut self, bytes: &[u8]) {
        self.raw_then(bytes, |_| {});
    }

    /// Writes `bytes`, then lets `fill` overwrite parts of what it wrote:
    /// one bounds check for a block of fields most of which are known in
    /// advance.
    #[inline(always)]
    pub fn raw_then(&mut self, bytes: &[u8], fill: impl FnOnce(&mut [u8])) {
        let n = bytes.len();
        let Some(dst) = self.buf.get_mut(self.pos..self.pos + n) else {
            self.pos = overflowed(self.scratch, self.pos, self.buf.len());
            return;
        };
        copy_short(dst, bytes);
        fill(dst);
        self.pos += n;
    }

    /// Writes a length-delimited field whose body is `bytes`.
    #[inline(always)]
    pub fn bytes_field(&mut self, field: u32, bytes: &[u8]) {
        self.bytes_field_by(field, bytes, copy_short);
    }

    /// Writes a length-delimited field whose body is an id (8 or 16
    /// bytes), moved a 64-bit word at a time. A host builds an id from
    /// 64-bit halves just before recording it; a 16-byte load of two
    /// 8-byte stores still in the store buffer cannot take its data from
    /// them and waits until they reach the cache.
    #[inline(always)]
    pub fn id_field<const N: usize>(&mut self, field: u32, id: &[u8; N]) {
        self.bytes_field_by(field, id, copy_words);
    }

    /// [`Writer::bytes_field`] with `copy` moving the body when key and
    /// length take a byte each.
    #[inline(always)]
    fn bytes_field_by(&mut self, field: u32, bytes: &[u8], copy: fn(&mut [u8], &[u8])) {
        let k = (field << 3) | LEN;
        let n = bytes.len();
        if k < 0x80 && n < 0x80 {
            // Key and length a byte each, the common case: one bounds
            // check for the whole field.
            let Some(dst) = self.buf.get_mut(self.pos..self.pos + 2 + n) else {
                self.pos = overflowed(self.scratch, self.pos, self.buf.len());
                return;
            };
            let (head, body) = dst.split_at_mut(2);
            head[0] = k as u8;
            head[1] = n as u8;
            copy(body, bytes);
            self.pos += 2 + n;
            return;
        }
        self.key(field, LEN);
        self.varint(n as u64);
        self.raw(bytes);
    }

    /// Writes a nested message numbered `outer` whose only field is the
    /// length-delimited `inner` with body `bytes` (an `AnyValue` holding a
    /// string, say). When keys and lengths take a byte each, the common
    /// case, its length is known before writing: one bounds check for the
    /// whole, and no length written after the body.
    #[inline(always)]
    pub fn nested_bytes_field(&mut self, outer: u32, inner: u32, bytes: &[u8]) {
        let (ko, ki) = ((outer << 3) | LEN, (inner << 3) | LEN);
        let n = bytes.len();
        if ko < 0x80 && ki < 0x80 && n < 0x80 - 2 {
            let Some(dst) = self.buf.get_mut(self.pos..self.pos + 4 + n) else {
                self.pos = overflowed(self.scratch, self.pos, self.buf.len());
                return;
            };
            let (head, body) = dst.split_at_mut(4);
            head.copy_from_slice(&[ko as u8, (n + 2) as u8, ki as u8, n as u8]);
            copy_short(body, bytes);
            self.pos += 4 + n;
            return;
        }
        let start = self.begin_message(outer);
        self.bytes_field(inner, bytes);
        self.end_message(start);
    }

    /// Writes a `KeyValue`-shaped message numbered `field`: field 1 `key`,
    /// and field 2 a nested message whose field 1 is `value`, when all of
    /// it is under 128 bytes (every length a byte, known before writing:
    /// one bounds check for the whole). Returns false, writing nothing,
    /// when it is not, or when `key` is empty (proto3 leaves it off).
    #[inline(always)]
    pub fn short_string_pair(&mut self, field: u32, key: &[u8], value: &[u8]) -> bool {
        let k = (field << 3) | LEN;
        let vn = value.len();
        let body = 2 + key.len() + 4 + vn;
        if k >= 0x80 || body >= 0x80 || key.is_empty() {
            return false;
        }
        if let Some(rest) = self.short_pair(k, key, body) {
            let (vhead, vd) = rest.split_at_mut(4);
            vhead.copy_from_slice(&[
                (2 << 3) | LEN as u8,
                (vn + 2) as u8,
                (1 << 3) | LEN as u8,
                vn as u8,
            ]);
            copy_short(vd, value);
        }
        true
    }

    /// Writes a `KeyValue`-shaped message numbered `field` whose value is a
    /// varint: field 1 `key`, and field 2 a nested message whose only field
    /// is the varint `inner` holding `v` (an `AnyValue` with an int or a
    /// bool), when all of it is under 128 bytes: one bounds check for the
    /// whole, as for [`Writer::short_string_pair`]. Returns false, writing
    /// nothing, when it is not, or when `key` is empty.
    #[inline(always)]
    pub fn short_varint_pair(&mut self, field: u32, key: &[u8], inner: u32, v: u64) -> bool {
        let (k, ki) = ((field << 3) | LEN, (inner << 3) | VARINT);
        let value = 1 + varint_len(v);
        let body = 2 + key.len() + 2 + value;
        if k >= 0x80 || ki >= 0x80 || body >= 0x80 || key.is_empty() {
            return false;
        }
        if let Some(rest) = self.short_pair(k, key, body) {
            rest[0] = (2 << 3) | LEN as u8;
            rest[1] = value as u8;
            rest[2] = ki as u8;
            varint_into(&mut rest[3..], v);
        }
        true
    }

    /// Takes the `2 + body` bytes of a short `KeyValue` field whose key
    /// byte is `k` (`body` under 128, `key` not empty), writes its key,
    /// length and key field, and returns the rest, for the value field; or
    /// `None`, the writer overflowed, if they do not fit.
    #[inline(always)]
    fn short_pair(&mut self, k: u32, key: &[u8], body: usize) -> Option<&mut [u8]> {
        let (start, end) = (self.pos, self.pos + 2 + body);
        if end > self.buf.len() {
            self.pos = overflowed(self.scratch, start, self.buf.len());
            return None;
        }
        self.pos = end;
        let dst = &mut self.buf[start..end];
        let (head, rest) = dst.split_at_mut(4);
        head.copy_from_slice(&[k as u8, body as u8, (1 << 3) | LEN as u8, key.len() as u8]);
        let (kd, rest) = rest.split_at_mut(key.len());
        copy_short(kd, key);
        Some(rest)
    }

    /// Writes the key and length of a nested message of `body` bytes; the
    /// caller writes the body next.
    #[inline]
    pub fn message_header(&mut self, field: u32, body: usize) {
        self.key(field, LEN);
        self.varint(body as u64);
    }

    /// Starts a nested message numbered `field` whose size the caller has
    /// not computed: writes the key and one byte for the length, and returns
    /// where the body starts, for [`Writer::end_message`]. The encoder then
    /// sizes each nested message once (in the size pass), not again here.
    #[inline]
    pub fn begin_message(&mut self, field: u32) -> usize {
        self.key(field, LEN);
        self.pos += 1;
        self.pos
    }

    /// Ends the nested message whose body started at `start`: writes its
    /// length. Most bodies are under 128 bytes and take the one byte kept
    /// for it; a longer body moves up by the bytes its length needs beyond
    /// that (the buffer, sized by the size pass, has room for them).
    #[inline]
    pub fn end_message(&mut self, start: usize) {
        // No separate test for an overflowed scratch writer (its position
        // past the end): a short body's length byte then lands in bytes
        // that are thrown away, or nowhere (`get_mut`), and `long_length`
        // finds the body past the end and reports the overflow again.
        let body = self.pos.wrapping_sub(start);
        if body < 0x80 {
            if let Some(b) = self.buf.get_mut(start.wrapping_sub(1)) {
                *b = body as u8;
            }
            return;
        }
        // Given the buffer rather than the writer (see `overflowed`).
        self.pos = long_length(self.buf, start, self.pos, self.scratch);
    }

    /// Writes a varint field.
    #[inline]
    pub fn varint_field(&mut self, field: u32, v: u64) {
        self.key(field, VARINT);
        self.varint(v);
    }

    /// Writes a fixed64 field.
    #[inline]
    pub fn fixed64_field(&mut self, field: u32, v: u64) {
        self.key_then(field, FIXED64, v.to_le_bytes());
    }

    /// Writes a fixed32 field.
    #[inline]
    pub fn fixed32_field(&mut self, field: u32, v: u32) {
        self.key_then(field, FIXED32, v.to_le_bytes());
    }

    /// Writes a key and `N` bytes after it, with one bounds check when the
    /// key takes one or two bytes (fields below 2048).
    #[inline(always)]
    fn key_then<const N: usize>(&mut self, field: u32, wire_type: u32, bytes: [u8; N]) {
        let k = (field << 3) | wire_type;
        // `k` is a constant wherever this is inlined: so is the key's length.
        let (key, kn) = match k {
            0..0x80 => ([k as u8, 0], 1),
            0x80..0x4000 => ([(k as u8) | 0x80, (k >> 7) as u8], 2),
            _ => {
                self.key(field, wire_type);
                self.raw(&bytes);
                return;
            }
        };
        let Some(dst) = self.buf.get_mut(self.pos..self.pos + kn + N) else {
            self.pos = overflowed(self.scratch, self.pos, self.buf.len());
            return;
        };
        dst[..kn].copy_from_slice(&key[..kn]);
        dst[kn..].copy_from_slice(&bytes);
        self.pos += kn + N;
    }
}

/// Writes `v` as a varint into `dst`, which is exactly `varint_len(v)`
/// bytes long: one bounds check (the caller's) for all of its bytes, not
/// one a byte.
#[inline(always)]
fn varint_into(dst: &mut [u8], mut v: u64) {
    debug_assert_eq!(dst.len(), varint_len(v));
    if let Some((last, init)) = dst.split_last_mut() {
        for b in init {
            *b = (v as u8) | 0x80;
            v >>= 7;
        }
        *last = v as u8;
    }
}

/// Copies `bytes` into `dst` (of the same length) eight bytes at a time,
/// then the rest byte by byte (see [`Writer::id_field`]).
#[inline(always)]
fn copy_words(dst: &mut [u8], bytes: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = bytes.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Copies `bytes` into `dst` (of the same length). Attribute keys and
/// values are mostly short: a call to memcpy costs more than the copy. Up
/// to 32 bytes are moved with two overlapping fixed-size moves instead,
/// which compile to plain loads and stores.
#[inline(always)]
fn copy_short(dst: &mut [u8], bytes: &[u8]) {
    let n = bytes.len();
    if n <= 32 {
        if n >= 16 {
            dst[..16].copy_from_slice(&bytes[..16]);
            dst[n - 16..].copy_from_slice(&bytes[n - 16..]);
        } else if n >= 8 {
            dst[..8].copy_from_slice(&bytes[..8]);
            dst[n - 8..].copy_from_slice(&bytes[n - 8..]);
        } else if n >= 4 {
            dst[..4].copy_from_slice(&bytes[..4]);
            dst[n - 4..].copy_from_slice(&bytes[n - 4..]);
        } else {
            for (d, s) in dst.iter_mut().zip(bytes) {
                *d = *s;
            }
        }
    } else {
        dst.copy_from_slice(bytes);
    }
}

/// Writes through `f` into `buf`: exactly sized (`scratch` false), or
/// scratch space that may be too small. Returns the bytes written, or
/// `None` if they did not fit. The writer is made here, not handed in, so
/// that it can live in registers wherever this is inlined.
#[inline(always)]
pub fn write_into(buf: &mut [u8], scratch: bool, f: impl FnOnce(&mut Writer<'_>)) -> Option<usize> {
    let mut w = Writer {
        buf,
        pos: 0,
        scratch,
    };
    f(&mut w);
    w.written()
}

/// Moves the body between `start` and `end` up by the bytes its length
/// needs beyond the one kept for it, writes the length before it, and
/// returns the position after the body. An overflowed scratch writer
/// (`end` past the buffer, or before `start`: an overflow puts the
/// position just past the end) stays overflowed.
#[cold]
#[inline(never)]
fn long_length(buf: &mut [u8], start: usize, end: usize, scratch: bool) -> usize {
    if end > buf.len() || end < start {
        return overflowed(scratch, end, buf.len());
    }
    let body = end - start;
    let extra = varint_len(body as u64) - 1;
    if end + extra > buf.len() {
        return overflowed(scratch, end, buf.len());
    }
    buf.copy_within(start..start + body, start + extra);
    let mut w = Writer {
        buf,
        pos: start - 1,
        scratch,
    };
    w.varint(body as u64);
    w.pos + body
}

/// Appends a varint to a growable buffer (used off the hot path, by workers
/// framing requests).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the key and length of a length-delimited field.
pub fn put_len_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, ((field << 3) | LEN) as u64);
    put_varint(out, len as u64);
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
