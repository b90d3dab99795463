//! The walk over a batch's Python objects (see the parent module): what
//! each object is, by its exact type, and where its copy goes.

use std::ffi::{c_char, c_int, c_void};

use super::{otlpflow_py_object, otlpflow_python_api};
use crate::marshal::Obj;

/// The entry points, all present (checked once per call).
#[derive(Clone, Copy)]
pub(super) struct Api {
    ob_type: usize,
    ob_size: usize,
    list_items: usize,
    tuple_items: usize,
    none: *const c_void,
    true_object: *const c_void,
    str_type: *const c_void,
    int_type: *const c_void,
    bool_type: *const c_void,
    float_type: *const c_void,
    bytes_type: *const c_void,
    list_type: *const c_void,
    tuple_type: *const c_void,
    dict_type: *const c_void,
    sixty_four: *const c_void,
    utf8: unsafe extern "C" fn(*mut otlpflow_py_object, *mut isize) -> *const c_char,
    as_i64: unsafe extern "C" fn(*mut otlpflow_py_object, *mut c_int) -> i64,
    low_u64: unsafe extern "C" fn(*mut otlpflow_py_object) -> u64,
    as_u64: unsafe extern "C" fn(*mut otlpflow_py_object) -> u64,
    rshift: unsafe extern "C" fn(
        *mut otlpflow_py_object,
        *mut otlpflow_py_object,
    ) -> *mut otlpflow_py_object,
    dec_ref: unsafe extern "C" fn(*mut otlpflow_py_object),
    dict_size: unsafe extern "C" fn(*mut otlpflow_py_object) -> isize,
    dict_next: unsafe extern "C" fn(
        *mut otlpflow_py_object,
        *mut isize,
        *mut *mut otlpflow_py_object,
        *mut *mut otlpflow_py_object,
    ) -> c_int,
    as_f64: unsafe extern "C" fn(*mut otlpflow_py_object) -> f64,
    bytes: unsafe extern "C" fn(*mut otlpflow_py_object, *mut *mut c_char, *mut isize) -> c_int,
    err_occurred: unsafe extern "C" fn() -> *mut otlpflow_py_object,
    err_clear: unsafe extern "C" fn(),
}

impl Api {
    pub(super) fn of(a: &otlpflow_python_api) -> Option<Api> {
        let objects = [
            a.none,
            a.true_object,
            a.str_type,
            a.int_type,
            a.bool_type,
            a.float_type,
            a.bytes_type,
            a.list_type,
            a.tuple_type,
            a.dict_type,
            a.sixty_four,
        ];
        let word = std::mem::size_of::<usize>();
        let offsets = [
            a.ob_type_offset,
            a.ob_size_offset,
            a.list_items_offset,
            a.tuple_items_offset,
        ];
        if objects.iter().any(|p| p.is_null()) || offsets.iter().any(|&o| o % word != 0 || o > 64) {
            return None;
        }
        Some(Api {
            ob_type: a.ob_type_offset,
            ob_size: a.ob_size_offset,
            list_items: a.list_items_offset,
            tuple_items: a.tuple_items_offset,
            none: a.none,
            true_object: a.true_object,
            str_type: a.str_type,
            int_type: a.int_type,
            bool_type: a.bool_type,
            float_type: a.float_type,
            bytes_type: a.bytes_type,
            list_type: a.list_type,
            tuple_type: a.tuple_type,
            dict_type: a.dict_type,
            sixty_four: a.sixty_four,
            utf8: a.unicode_as_utf8_and_size?,
            as_i64: a.long_as_long_long_and_overflow?,
            low_u64: a.long_as_unsigned_long_long_mask?,
            as_u64: a.long_as_unsigned_long_long?,
            rshift: a.number_rshift?,
            dec_ref: a.dec_ref?,
            dict_size: a.dict_size?,
            dict_next: a.dict_next?,
            as_f64: a.float_as_double?,
            bytes: a.bytes_as_string_and_size?,
            err_occurred: a.err_occurred?,
            err_clear: a.err_clear?,
        })
    }
}

/// The deepest nesting walked (as `marshal::MAX_DEPTH`): a batch, a span,
/// its events, an event's attributes, an array value. Deeper is a value no
/// span holds, refused with its span.
const MAX_DEPTH: usize = 16;

/// The most objects one batch may stage: 64 MiB of arena. Reached only by
/// objects shared many times over (a list holding one list a thousand
/// times, nested), which marshal writes once and refers back to.
const MAX_ITEMS: usize = 1 << 22;

/// Why a batch could not be staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StageError {
    /// Past `MAX_ITEMS`, or strings past 4 GiB.
    TooBig,
    /// The batch is not a list.
    NotAList,
}

struct Walk<'s> {
    api: Api,
    buf: &'s mut Vec<u8>,
    items: &'s mut Vec<Obj>,
    /// The strings met in this batch, by address (see [`Walk::str`]).
    strings: &'s mut [(usize, Obj)],
}

/// Slots of the string cache: a batch's spans share most of their strings
/// (attribute keys, names, repeated values are the same objects span after
/// span), each read and checked once per batch.
const STRING_CACHE: usize = 512;

impl Walk<'_> {
    /// The object `o` as the marshal reader would have read it; a
    /// container's items are appended to the arena. Inlined into the
    /// container loops: a span is mostly strings and integers, and a call
    /// per leaf cost more than reading it.
    ///
    /// # Safety
    /// `o` is a live object of the interpreter `api` describes, the GIL is
    /// held, and no Python code runs during the call (see the module
    /// docs).
    #[inline(always)]
    unsafe fn value(
        &mut self,
        o: *mut otlpflow_py_object,
        depth: usize,
    ) -> Result<Obj, StageError> {
        let a = self.api;
        // SAFETY: `o` is a live object (the contract); every object starts
        // with its type pointer at `ob_type` (checked by the binding).
        let t = unsafe { *(o.cast::<u8>().add(a.ob_type) as *const *const c_void) };
        if t == a.str_type {
            // SAFETY: an exact `str`, live.
            return unsafe { self.str(o) };
        }
        if t == a.int_type {
            let mut overflow: c_int = 0;
            // SAFETY: an exact int: the conversion runs no Python code.
            let v = unsafe { (a.as_i64)(o, &mut overflow) };
            if overflow == 0 {
                return Ok(Obj::Int(v));
            }
            // SAFETY: an exact int, live.
            return unsafe { self.big(o, overflow) };
        }
        if o.cast_const() == a.none {
            return Ok(Obj::None);
        }
        // SAFETY: the contract.
        unsafe { self.other(o, t, depth) }
    }

    /// Containers, and the leaves spans seldom hold.
    ///
    /// # Safety
    /// As [`Walk::value`]; `t` is the type of `o`.
    #[inline(never)]
    unsafe fn other(
        &mut self,
        o: *mut otlpflow_py_object,
        t: *const c_void,
        depth: usize,
    ) -> Result<Obj, StageError> {
        let a = self.api;
        if t == a.list_type || t == a.tuple_type {
            if depth >= MAX_DEPTH {
                return Ok(Obj::Other);
            }
            // SAFETY: a live list or tuple: `ob_size` is its length, its
            // items an array of that many live objects (inline in a tuple,
            // behind a pointer in a list), unchanged while the GIL is held
            // and no Python code runs.
            let items = unsafe {
                let base = o.cast::<u8>();
                let n = *(base.add(a.ob_size) as *const isize);
                let first = if t == a.list_type {
                    *(base.add(a.list_items) as *const *const *mut otlpflow_py_object)
                } else {
                    base.add(a.tuple_items) as *const *mut otlpflow_py_object
                };
                if n <= 0 || first.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(first, n as usize)
                }
            };
            let start = self.reserve(items.len())?;
            for (i, &item) in items.iter().enumerate() {
                // SAFETY: an item of a live container, itself live.
                let v = unsafe { self.value(item, depth + 1) }?;
                self.items[start + i] = v;
            }
            return Ok(Obj::Seq {
                start: start as u32,
                len: items.len() as u32,
            });
        }
        if t == a.dict_type {
            if depth >= MAX_DEPTH {
                return Ok(Obj::Other);
            }
            // SAFETY: a live exact dict.
            return unsafe { self.dict(o, depth) };
        }
        if t == a.bool_type {
            return Ok(Obj::Bool(o.cast_const() == a.true_object));
        }
        if t == a.float_type {
            // SAFETY: an exact float, live; cannot fail for one.
            return Ok(Obj::Float(unsafe { (a.as_f64)(o) }));
        }
        if t == a.bytes_type {
            let mut p: *mut c_char = std::ptr::null_mut();
            let mut n: isize = 0;
            // SAFETY: an exact bytes, live: its buffer is `n` bytes at `p`,
            // copied before anything else runs.
            let bytes = unsafe {
                if (a.bytes)(o, &mut p, &mut n) != 0 || p.is_null() || n < 0 {
                    (a.err_clear)();
                    return Ok(Obj::Other);
                }
                std::slice::from_raw_parts(p.cast::<u8>(), n as usize)
            };
            let (at, len) = self.copy(bytes)?;
            return Ok(Obj::Bytes { at, len });
        }
        Ok(Obj::Other)
    }

    /// Reserves `n` arena slots; the first one's index.
    fn reserve(&mut self, n: usize) -> Result<usize, StageError> {
        let start = self.items.len();
        if n > MAX_ITEMS - start.min(MAX_ITEMS) {
            return Err(StageError::TooBig);
        }
        self.items.resize(start + n, Obj::None);
        Ok(start)
    }

    /// Appends `bytes` to the buffer; their position and length.
    fn copy(&mut self, bytes: &[u8]) -> Result<(u32, u32), StageError> {
        let at = self.buf.len();
        if at + bytes.len() > u32::MAX as usize {
            return Err(StageError::TooBig);
        }
        self.buf.extend_from_slice(bytes);
        Ok((at as u32, bytes.len() as u32))
    }

    /// A string, read once per batch: the next time the same object is
    /// met (an address is one object's for the whole call, every object
    /// staying alive), its first reading is reused.
    ///
    /// # Safety
    /// `o` is a live exact `str` (and [`Walk::value`]'s contract).
    #[inline(always)]
    unsafe fn str(&mut self, o: *mut otlpflow_py_object) -> Result<Obj, StageError> {
        let key = o as usize;
        let slot = (key >> 4) % STRING_CACHE;
        let (seen, obj) = self.strings[slot];
        if seen == key {
            return Ok(obj);
        }
        // SAFETY: the contract.
        let obj = unsafe { self.read_str(o) }?;
        self.strings[slot] = (key, obj);
        Ok(obj)
    }

    /// # Safety
    /// As [`Walk::str`].
    #[inline(never)]
    unsafe fn read_str(&mut self, o: *mut otlpflow_py_object) -> Result<Obj, StageError> {
        let a = self.api;
        let mut n: isize = 0;
        // SAFETY: an exact str: its UTF-8 form (cached in the object, or
        // its own data when ASCII) is `n` bytes at `p`, copied at once.
        let text = unsafe {
            let p = (a.utf8)(o, &mut n);
            if p.is_null() || n < 0 {
                // A lone surrogate has no UTF-8 form.
                (a.err_clear)();
                return Ok(Obj::BadStr);
            }
            std::slice::from_raw_parts(p.cast::<u8>(), n as usize)
        };
        // Checked here too: `Parsed::str` relies on it, and this side
        // trusts no buffer it did not check.
        let valid = text.is_ascii() || std::str::from_utf8(text).is_ok();
        let (at, len) = self.copy(text)?;
        Ok(if valid {
            Obj::Str { at, len }
        } else {
            Obj::BadStr
        })
    }

    /// An integer past `i64` (`overflow` as `PyLong_AsLongLongAndOverflow`
    /// said): a positive one of up to 128 bits is an id.
    ///
    /// # Safety
    /// `o` is a live exact `int` (and [`Walk::value`]'s contract).
    #[inline(never)]
    unsafe fn big(
        &mut self,
        o: *mut otlpflow_py_object,
        overflow: c_int,
    ) -> Result<Obj, StageError> {
        let a = self.api;
        if overflow < 0 {
            // Below i64::MIN: no id, no attribute.
            return Ok(Obj::Other);
        }
        // A positive integer past i64: an id of up to 128 bits.
        // SAFETY: as above; `rshift` of two exact ints makes a new int (or
        // NULL on failure), released here.
        let magnitude = unsafe {
            let low = (a.low_u64)(o);
            let high_obj = (a.rshift)(o, a.sixty_four.cast_mut());
            if high_obj.is_null() {
                (a.err_clear)();
                return Ok(Obj::Other);
            }
            let high = (a.as_u64)(high_obj);
            let failed = high == u64::MAX && !(a.err_occurred)().is_null();
            (a.dec_ref)(high_obj);
            if failed {
                // Past 128 bits.
                (a.err_clear)();
                return Ok(Obj::Other);
            }
            (high as u128) << 64 | low as u128
        };
        // As marshal writes it: 15-bit digits, least significant first.
        let digits = (128 - magnitude.leading_zeros()).div_ceil(15) as usize;
        let mut raw = [0u8; 18];
        for (i, d) in raw.chunks_exact_mut(2).take(digits).enumerate() {
            d.copy_from_slice(&((magnitude >> (15 * i)) as u16 & 0x7fff).to_le_bytes());
        }
        let (at, _) = self.copy(&raw[..2 * digits])?;
        Ok(Obj::Big {
            at,
            digits: digits as u8,
        })
    }

    /// # Safety
    /// `o` is a live exact `dict` (and [`Walk::value`]'s contract).
    unsafe fn dict(&mut self, o: *mut otlpflow_py_object, depth: usize) -> Result<Obj, StageError> {
        let a = self.api;
        // SAFETY: an exact dict, live; its size does not change during the
        // walk (no Python code runs).
        let n = unsafe { (a.dict_size)(o) }.max(0) as usize;
        let start = self.reserve(2 * n)?;
        let mut pos: isize = 0;
        let mut pairs = 0;
        let (mut k, mut v): (*mut otlpflow_py_object, *mut otlpflow_py_object) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: `PyDict_Next` over a dict nobody changes meanwhile lends
        // live keys and values.
        while pairs < n && unsafe { (a.dict_next)(o, &mut pos, &mut k, &mut v) } != 0 {
            // SAFETY: borrowed from the live dict.
            let key = unsafe { self.value(k, depth + 1) }?;
            let key = match key {
                Obj::Str { .. } | Obj::BadStr => key,
                _ => Obj::Other,
            };
            // SAFETY: as the key.
            let value = unsafe { self.value(v, depth + 1) }?;
            self.items[start + 2 * pairs] = key;
            self.items[start + 2 * pairs + 1] = value;
            pairs += 1;
        }
        Ok(Obj::Dict {
            start: start as u32,
            len: pairs as u32,
        })
    }
}

/// Walks the list `spans` (the span records of `pyspans`) into `buf` and
/// `items` (cleared first; the top list at `items[0]`), with `strings` as
/// the string cache.
///
/// # Safety
/// As [`Walk::value`], for `spans`.
pub(super) unsafe fn stage(
    api: Api,
    spans: *mut otlpflow_py_object,
    buf: &mut Vec<u8>,
    items: &mut Vec<Obj>,
    strings: &mut Vec<(usize, Obj)>,
) -> Result<(), StageError> {
    buf.clear();
    items.clear();
    items.push(Obj::None);
    strings.clear();
    strings.resize(STRING_CACHE, (0, Obj::None));
    let mut walk = Walk {
        api,
        buf,
        items,
        strings,
    };
    // SAFETY: the contract.
    let top = unsafe { walk.value(spans, 0) }?;
    if !matches!(top, Obj::Seq { .. }) {
        return Err(StageError::NotAList);
    }
    walk.items[0] = top;
    Ok(())
}
