//! A reader of Python's `marshal` format, version 4 (what
//! `marshal.dumps(obj, 4)` writes on CPython 3.4 and later), for the
//! values a span can hold: `None`, booleans, integers, floats, `str`,
//! `bytes`, tuples, lists and dicts, with back-references.
//!
//! Why marshal: it is the fastest way pure Python has to turn a batch of
//! span tuples into bytes (one call in C, about 0.5 us a span here), far
//! cheaper than packing each field with `struct`, and it keeps the Python
//! binding a plain ctypes one. The bytes come from the host's own process,
//! but the reader trusts nothing: every length is checked against the
//! buffer, nesting is bounded, a back-reference must point at an object
//! already read, and anything else (code objects, integers wider than 128
//! bits) is an error, never a panic.
//!
//! Objects are kept in one flat arena: a container is a range of it, so a
//! whole batch is parsed with a handful of allocations. An object is 16
//! bytes (strings are positions in the buffer), small enough to travel in
//! registers: a wider one was copied through memory after narrow stores,
//! and the stalled store forwarding cost more than the parsing.

/// A parsed object; containers index [`Parsed::items`], strings and big
/// integers the buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    /// An integer that fits an `i64`.
    Int(i64),
    /// A non-negative integer past `i64::MAX` (up to 128 bits: an id): its
    /// 15-bit digits in the buffer.
    Big {
        at: u32,
        digits: u8,
    },
    Float(f64),
    /// A `str`, its UTF-8 checked once when read (a string used again is
    /// a back-reference to the same object, not checked again).
    Str {
        at: u32,
        len: u32,
    },
    /// A `str` that is not valid UTF-8 (marshal writes a lone surrogate
    /// that way).
    BadStr,
    Bytes {
        at: u32,
        len: u32,
    },
    /// A tuple or list: `len` items from `start` in the arena.
    Seq {
        start: u32,
        len: u32,
    },
    /// A dict: `len` key, value pairs from `start` (keys at even offsets).
    Dict {
        start: u32,
        len: u32,
    },
    /// A value of a type a span cannot hold (a set, a complex number,
    /// `...`): read past, so that only the span holding it is refused.
    Other,
}

impl Obj {
    /// The integer as an `i64`, if it is one and fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Obj::Int(v) => Some(v),
            Obj::Bool(b) => Some(b as i64),
            _ => None,
        }
    }

    /// The integer as a `u64`, if it is a non-negative one that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Obj::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// Why a buffer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarshalError {
    /// The buffer ends inside an object.
    Truncated,
    /// A type code this reader does not take (or does not know).
    Unsupported(u8),
    /// Nested deeper than the limit.
    TooDeep,
    /// A back-reference to an object not read yet.
    BadReference,
    /// A negative length, or a dict key that is a container.
    Malformed,
    /// Bytes left over after the top-level object.
    TrailingBytes,
}

/// The deepest nesting read: a batch is a list of span tuples holding
/// lists of event tuples holding attribute dicts holding array values, 5
/// levels; 16 leaves room and bounds the reader's recursion.
const MAX_DEPTH: usize = 16;

/// A parsed buffer: the arena of items, and the buffer strings point into.
#[derive(Debug)]
pub struct Parsed<'a> {
    buf: &'a [u8],
    pub items: Vec<Obj>,
}

impl<'a> Parsed<'a> {
    /// The items of a tuple or list (empty for anything else).
    pub fn seq(&self, o: Obj) -> &[Obj] {
        match o {
            Obj::Seq { start, len } => &self.items[start as usize..(start + len) as usize],
            _ => &[],
        }
    }

    /// The key, value pairs of a dict (empty for anything else).
    pub fn dict(&self, o: Obj) -> impl Iterator<Item = (Obj, Obj)> + '_ {
        let pairs = match o {
            Obj::Dict { start, len } => {
                &self.items[start as usize..start as usize + 2 * len as usize]
            }
            _ => &[],
        };
        pairs.chunks_exact(2).map(|kv| (kv[0], kv[1]))
    }

    /// A batch read by another reader (`pyobjects`), top object at
    /// `items[0]`.
    ///
    /// # Safety
    /// What the marshal reader guarantees of what it makes: every `Str`,
    /// `Bytes` and `Big` range lies in `buf`, every `Str` range is UTF-8,
    /// and every container's range lies in `items`.
    pub(crate) unsafe fn from_parts(buf: &'a [u8], items: Vec<Obj>) -> Parsed<'a> {
        Parsed { buf, items }
    }

    /// The arena, for the next batch.
    pub(crate) fn into_items(mut self) -> Vec<Obj> {
        std::mem::take(&mut self.items)
    }

    fn slice(&self, at: u32, len: u32) -> &'a [u8] {
        // In bounds: the reader checked every position it made.
        &self.buf[at as usize..at as usize + len as usize]
    }

    /// The text, if `o` is a `str` of valid UTF-8.
    pub fn str(&self, o: Obj) -> Option<&'a str> {
        match o {
            Obj::Str { at, len } => {
                let bytes = self.slice(at, len);
                // SAFETY: the reader made `Obj::Str` only for this range of
                // this buffer after `std::str::from_utf8` accepted it (see
                // `Reader::text`), and the buffer is borrowed unchanged.
                Some(unsafe { std::str::from_utf8_unchecked(bytes) })
            }
            _ => None,
        }
    }

    /// The bytes, if `o` is a `bytes`.
    pub fn bytes(&self, o: Obj) -> Option<&'a [u8]> {
        match o {
            Obj::Bytes { at, len } => Some(self.slice(at, len)),
            _ => None,
        }
    }

    /// The integer as a `u128`, if it is a non-negative one.
    pub fn u128(&self, o: Obj) -> Option<u128> {
        match o {
            Obj::Int(v) => u128::try_from(v).ok(),
            Obj::Big { at, digits } => {
                let raw = self.slice(at, 2 * digits as u32);
                let mut magnitude = 0u128;
                for (i, d) in raw.chunks_exact(2).enumerate() {
                    magnitude |= (u16::from_le_bytes([d[0], d[1]]) as u128) << (15 * i);
                }
                Some(magnitude)
            }
            _ => None,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Objects flagged for back-reference, in the order marshal numbers
    /// them; `None` while a container is still being read.
    refs: Vec<Option<Obj>>,
    /// Items of the dicts being read (their length is known only at the
    /// end), moved to the arena when each one closes so that every
    /// container's items are contiguous.
    stack: Vec<Obj>,
    arena: Vec<Obj>,
}

const FLAG_REF: u8 = 0x80;

/// Where an object read goes: a reserved arena slot (an item of a tuple
/// or list) or a stack slot (a key or value of a dict being read).
#[derive(Clone, Copy)]
enum Slot {
    Arena(usize),
    Stack(usize),
}

impl<'a> Reader<'a> {
    /// A string of the next `n` bytes: `Str` if they are UTF-8.
    #[inline(always)]
    fn text(&mut self, n: usize) -> Result<Obj, MarshalError> {
        let at = self.pos as u32;
        let bytes = self.take(n)?;
        Ok(match std::str::from_utf8(bytes) {
            Ok(_) => Obj::Str { at, len: n as u32 },
            Err(_) => Obj::BadStr,
        })
    }

    /// The position and length of the next `n` bytes, taken.
    #[inline(always)]
    fn span(&mut self, n: usize) -> Result<(u32, u32), MarshalError> {
        let at = self.pos as u32;
        self.take(n)?;
        Ok((at, n as u32))
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], MarshalError> {
        let end = self.pos.checked_add(n).ok_or(MarshalError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(MarshalError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], MarshalError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, MarshalError> {
        Ok(self.take(1)?[0])
    }

    #[inline(always)]
    fn i32(&mut self) -> Result<i32, MarshalError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn len(&mut self) -> Result<usize, MarshalError> {
        usize::try_from(self.i32()?).map_err(|_| MarshalError::Malformed)
    }

    /// Reads one object into `dst`. Written in place, not returned: a
    /// returned `Result<Obj, _>` went through memory, and copying it out
    /// stalled on store forwarding more than all the parsing cost.
    ///
    /// Leaves (everything but containers) are read here, inlined into the
    /// container loops that call it; a container goes to `container`. A
    /// span's batch is mostly leaves, and a recursive call per leaf cost
    /// more in its entry and exit than the leaf's reading.
    #[inline(always)]
    fn object(&mut self, depth: usize, dst: Slot) -> Result<(), MarshalError> {
        let code = self.byte()?;
        let obj = match code & !FLAG_REF {
            b'N' => Obj::None,
            b'T' => Obj::Bool(true),
            b'F' => Obj::Bool(false),
            b'i' => Obj::Int(self.i32()? as i64),
            b'z' | b'Z' => {
                let n = self.byte()? as usize;
                self.text(n)?
            }
            b'r' => {
                let i = u32::from_le_bytes(self.array()?) as usize;
                // A reference is not itself numbered (marshal never flags it).
                match self.refs.get(i) {
                    Some(Some(o)) => *o,
                    _ => return Err(MarshalError::BadReference),
                }
            }
            _ => return self.container_or_rare(code, depth, dst),
        };
        // A leaf holds no other object, so it takes its reference number
        // after it is read, in the same order as marshal numbered it.
        if code & FLAG_REF != 0 {
            self.refs.push(Some(obj));
        }
        self.put(dst, obj);
        Ok(())
    }

    #[inline(always)]
    fn put(&mut self, dst: Slot, obj: Obj) {
        match dst {
            Slot::Arena(i) => self.arena[i] = obj,
            Slot::Stack(i) => self.stack[i] = obj,
        }
    }

    /// Containers, and the leaves spans seldom hold. A container's
    /// reference number is taken before its items are read (they number
    /// after it), and it cannot be referred to until it is whole.
    #[inline(never)]
    fn container_or_rare(&mut self, code: u8, depth: usize, dst: Slot) -> Result<(), MarshalError> {
        if depth > MAX_DEPTH {
            return Err(MarshalError::TooDeep);
        }
        let slot = if code & FLAG_REF != 0 {
            self.refs.push(None);
            Some(self.refs.len() - 1)
        } else {
            None
        };
        let obj = match code & !FLAG_REF {
            b'l' => self.long()?,
            b'g' => Obj::Float(f64::from_le_bytes(self.array()?)),
            b'u' | b't' | b'a' | b'A' => {
                let n = self.len()?;
                self.text(n)?
            }
            b's' => {
                let n = self.len()?;
                let (at, len) = self.span(n)?;
                Obj::Bytes { at, len }
            }
            b')' => {
                let n = self.byte()? as usize;
                self.seq(n, depth)?
            }
            b'(' | b'[' => {
                let n = self.len()?;
                self.seq(n, depth)?
            }
            b'{' => self.dict(depth)?,
            b'<' | b'>' => {
                let n = self.len()?;
                self.seq(n, depth)?;
                Obj::Other
            }
            b'y' => {
                self.take(16)?;
                Obj::Other
            }
            b'.' | b'S' => Obj::Other,
            other => return Err(MarshalError::Unsupported(other)),
        };
        if let Some(i) = slot {
            self.refs[i] = Some(obj);
        }
        self.put(dst, obj);
        Ok(())
    }

    /// A `PyLong`: a signed count of 15-bit digits, least significant first.
    fn long(&mut self) -> Result<Obj, MarshalError> {
        let n = self.i32()?;
        let digits = n.unsigned_abs() as usize;
        // 9 digits are 135 bits: enough for any 128-bit id.
        if digits > 9 {
            return Err(MarshalError::Unsupported(b'l'));
        }
        let at = self.pos as u32;
        let raw = self.take(2 * digits)?;
        let mut magnitude: u128 = 0;
        for (i, d) in raw.chunks_exact(2).enumerate() {
            let d = u16::from_le_bytes([d[0], d[1]]) as u128;
            if d >= 1 << 15 {
                return Err(MarshalError::Malformed);
            }
            let shifted = d
                .checked_shl(15 * i as u32)
                .filter(|s| s >> (15 * i as u32) == d)
                .ok_or(MarshalError::Unsupported(b'l'))?;
            magnitude |= shifted;
        }
        match (n < 0, i64::try_from(magnitude)) {
            (false, Ok(v)) => Ok(Obj::Int(v)),
            (true, _) if magnitude <= 1 << 63 => {
                Ok(Obj::Int((magnitude as i128).wrapping_neg() as i64))
            }
            (false, Err(_)) => Ok(Obj::Big {
                at,
                digits: digits as u8,
            }),
            (true, _) => Err(MarshalError::Unsupported(b'l')),
        }
    }

    fn seq(&mut self, n: usize, depth: usize) -> Result<Obj, MarshalError> {
        // Every item takes at least one byte: a count past what is left
        // cannot be honest (and must not size an allocation).
        if n > self.buf.len() - self.pos {
            return Err(MarshalError::Truncated);
        }
        // The items' slots are reserved first and filled in place; nested
        // containers put their own items after them.
        let start = self.arena.len();
        self.arena.resize(start + n, Obj::None);
        for i in 0..n {
            self.object(depth + 1, Slot::Arena(start + i))?;
        }
        Ok(Obj::Seq {
            start: start as u32,
            len: n as u32,
        })
    }

    fn dict(&mut self, depth: usize) -> Result<Obj, MarshalError> {
        let base = self.stack.len();
        let mut pairs = 0;
        loop {
            if self.buf.get(self.pos) == Some(&b'0') {
                self.pos += 1;
                break;
            }
            let k = self.stack.len();
            self.stack.extend([Obj::None, Obj::None]);
            self.object(depth + 1, Slot::Stack(k))?;
            if matches!(self.stack[k], Obj::Seq { .. } | Obj::Dict { .. }) {
                return Err(MarshalError::Malformed);
            }
            self.object(depth + 1, Slot::Stack(k + 1))?;
            pairs += 1;
        }
        Ok(self.close_dict(base, pairs))
    }

    /// Moves a closed dict's items from the stack to the arena.
    fn close_dict(&mut self, base: usize, pairs: usize) -> Obj {
        let start = self.arena.len() as u32;
        // A copy and a truncate: a `Drain` cost twice as much for the few
        // pairs a dict of attributes has.
        self.arena.extend_from_slice(&self.stack[base..]);
        self.stack.truncate(base);
        Obj::Dict {
            start,
            len: pairs as u32,
        }
    }
}

/// Reads one marshalled object filling the whole buffer.
pub fn parse(buf: &[u8]) -> Result<(Obj, Parsed<'_>), MarshalError> {
    // Positions are u32: no buffer may pass them.
    if buf.len() > u32::MAX as usize {
        return Err(MarshalError::Malformed);
    }
    let mut r = Reader {
        buf,
        pos: 0,
        refs: Vec::new(),
        stack: Vec::new(),
        arena: SPARE.with(|s| s.take()),
    };
    r.arena.clear();
    r.arena.push(Obj::None);
    let read = r.object(0, Slot::Arena(0));
    let parsed = Parsed {
        buf,
        items: r.arena,
    };
    match read {
        Ok(()) if r.pos != buf.len() => Err(MarshalError::TrailingBytes),
        Ok(()) => Ok((parsed.items[0], parsed)),
        Err(e) => Err(e),
    }
}

thread_local! {
    /// The last arena, kept for the next batch of this thread: a batch's
    /// arena is a few hundred KiB, and a fresh one each time would be
    /// mapped and faulted in page by page on every call.
    static SPARE: std::cell::Cell<Vec<Obj>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        // Keep at most 4 MiB of arena for the next call.
        // (An arena taken by `into_items` leaves nothing to keep.)
        let capacity = self.items.capacity();
        if capacity > 0 && capacity <= (4 << 20) / std::mem::size_of::<Obj>() {
            let items = std::mem::take(&mut self.items);
            SPARE.with(|s| s.set(items));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_python_wrote() {
        // marshal.dumps(("GET", 7, -2, 2**64 + 5, 1.5, None, True, b"\x00", [1, "GET"], {"k": 2}), 4)
        // written out by hand from the format: a small tuple of 10.
        let mut b = vec![b')', 10];
        b.extend([0xDA, 3]); // short ascii interned, flagged (ref 0)
        b.extend(b"GET");
        b.push(b'i');
        b.extend(7i32.to_le_bytes());
        b.push(b'i');
        b.extend((-2i32).to_le_bytes());
        b.push(b'l'); // 2**64 + 5 in 15-bit digits: 5, 0, 0, 0, 16
        b.extend(5i32.to_le_bytes());
        for d in [5u16, 0, 0, 0, 16] {
            b.extend(d.to_le_bytes());
        }
        b.push(b'g');
        b.extend(1.5f64.to_le_bytes());
        b.push(b'N');
        b.push(b'T');
        b.push(b's');
        b.extend(1i32.to_le_bytes());
        b.push(0);
        b.push(b'[');
        b.extend(2i32.to_le_bytes());
        b.push(b'i');
        b.extend(1i32.to_le_bytes());
        b.push(b'r');
        b.extend(0u32.to_le_bytes());
        b.push(b'{');
        b.extend([b'z', 1, b'k', b'i']);
        b.extend(2i32.to_le_bytes());
        b.push(b'0');
        let (top, p) = parse(&b).unwrap();
        let items = p.seq(top);
        assert_eq!(items.len(), 10);
        assert_eq!(p.str(items[0]), Some("GET"));
        assert_eq!(items[1].as_i64(), Some(7));
        assert_eq!(items[2].as_i64(), Some(-2));
        assert_eq!(p.u128(items[3]), Some((1u128 << 64) + 5));
        assert_eq!(items[4], Obj::Float(1.5));
        assert_eq!(items[5], Obj::None);
        assert_eq!(items[6], Obj::Bool(true));
        assert_eq!(p.bytes(items[7]), Some(&[0u8][..]));
        let list = p.seq(items[8]);
        assert_eq!((list[0].as_i64(), p.str(list[1])), (Some(1), Some("GET")));
        let d: Vec<_> = p.dict(items[9]).collect();
        assert_eq!(d.len(), 1);
        assert_eq!((p.str(d[0].0), d[0].1), (Some("k"), Obj::Int(2)));
    }

    #[test]
    fn an_object_fits_two_registers() {
        assert_eq!(std::mem::size_of::<Obj>(), 16);
        assert_eq!(std::mem::size_of::<Result<Obj, MarshalError>>(), 16);
    }

    #[test]
    fn hostile_buffers_are_errors() {
        for (bytes, want) in [
            (&b""[..], MarshalError::Truncated),
            (b"(\xff\xff\xff\x7f", MarshalError::Truncated),
            (b"(\xff\xff\xff\xff", MarshalError::Malformed),
            (b"r\x00\x00\x00\x00", MarshalError::BadReference),
            (b"c", MarshalError::Unsupported(b'c')),
            (b"NN", MarshalError::TrailingBytes),
            (b"l\x0a\x00\x00\x00", MarshalError::Unsupported(b'l')),
            (b"{)\x00N0", MarshalError::Malformed),
            (b"z\x05ab", MarshalError::Truncated),
        ] {
            assert_eq!(parse(bytes).map(|_| ()), Err(want), "{bytes:?}");
        }
        // A container cannot refer to itself while it is being read.
        assert_eq!(
            parse(b"\xa8\x01\x00\x00\x00r\x00\x00\x00\x00").map(|_| ()),
            Err(MarshalError::BadReference)
        );
        // Nesting past the limit.
        let deep: Vec<u8> = std::iter::repeat_n([b')', 1], 40)
            .flatten()
            .chain([b'N'])
            .collect();
        assert_eq!(parse(&deep).map(|_| ()), Err(MarshalError::TooDeep));
    }
}
