//! Every raw-pointer conversion of the C ABI, in one place (after
//! rustls-ffi's `ffi.rs`): API files call these and contain no casts of
//! their own. Each check turns a bad pointer or length into a result code.

use std::os::raw::c_char;

use crate::otlpflow_result;

mod handle;

pub(crate) use handle::{free_handle, handle_mut, handle_ref, into_handle, Handle};

/// A borrowed string from C: pointer and length, no NUL needed. `ptr` may be
/// NULL only when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_str {
    /// The first byte.
    pub ptr: *const c_char,
    /// The number of bytes.
    pub len: usize,
}

/// The largest length we accept for any C string or array: a length past
/// this is a caller bug (an uninitialised or negative value), not data.
const MAX_LEN: usize = isize::MAX as usize / 2;

/// Borrows `s` as UTF-8 text.
///
/// # Safety
/// If `s.ptr` is not NULL it must point to `s.len` readable bytes that stay
/// valid and unchanged for `'a`.
pub(crate) unsafe fn str_of<'a>(s: otlpflow_str) -> Result<&'a str, otlpflow_result> {
    if s.len == 0 {
        return Ok("");
    }
    // SAFETY: forwarded to the caller's contract.
    let bytes = unsafe { bytes_of(s.ptr.cast(), s.len)? };
    std::str::from_utf8(bytes).map_err(|_| otlpflow_result::InvalidUtf8)
}

/// Borrows `len` bytes at `ptr`.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` readable bytes valid for `'a`.
pub(crate) unsafe fn bytes_of<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], otlpflow_result> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { slice_of(ptr, len) }
}

/// Borrows an array of `len` `T` at `ptr` (NULL is fine when `len` is 0).
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` initialised, aligned `T`
/// valid for `'a`.
pub(crate) unsafe fn slice_of<'a, T>(
    ptr: *const T,
    len: usize,
) -> Result<&'a [T], otlpflow_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(otlpflow_result::NullArgument);
    }
    if len > MAX_LEN / std::mem::size_of::<T>().max(1) || !ptr.is_aligned() {
        return Err(otlpflow_result::InvalidArgument);
    }
    // SAFETY: non-NULL, aligned, length bounded; validity is the caller's
    // contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `*ptr`.
///
/// # Safety
/// If not NULL, `ptr` must point to a valid `T` for `'a`.
pub(crate) unsafe fn ref_of<'a, T>(ptr: *const T) -> Result<&'a T, otlpflow_result> {
    if !ptr.is_null() && !ptr.is_aligned() {
        return Err(otlpflow_result::InvalidArgument);
    }
    // SAFETY: forwarded to the caller's contract; aligned; `as_ref` checks
    // NULL.
    unsafe { ptr.as_ref() }.ok_or(otlpflow_result::NullArgument)
}

/// Writes `value` to an out-parameter.
///
/// # Safety
/// If not NULL, `out` must be valid for writing a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) -> Result<(), otlpflow_result> {
    if out.is_null() {
        return Err(otlpflow_result::NullArgument);
    }
    if !out.is_aligned() {
        return Err(otlpflow_result::InvalidArgument);
    }
    // SAFETY: non-NULL and writable by the caller's contract; `write` does
    // not read or drop the old (possibly uninitialised) value.
    unsafe { out.write(value) };
    Ok(())
}

/// Copies `text` into `buf` (NUL-terminated) and its length (without the
/// NUL) into `*out_len`. With too small a buffer nothing but `*out_len` is
/// written and `OTLPFLOW_RESULT_BUFFER_TOO_SMALL` returned.
///
/// # Safety
/// `buf` NULL or writable for `cap` bytes; `out_len` NULL or writable.
pub(crate) unsafe fn copy_text(
    text: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), otlpflow_result> {
    // SAFETY: forwarded.
    unsafe { write_out(out_len, text.len())? };
    if cap < text.len() + 1 {
        return Err(otlpflow_result::BufferTooSmall);
    }
    if buf.is_null() {
        return Err(otlpflow_result::NullArgument);
    }
    // SAFETY: `buf` is writable for `cap >= len + 1` bytes; the regions do
    // not overlap (one is ours).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    Ok(())
}

/// `text` as a fixed-size NUL-terminated C string, cut at a character
/// boundary to fit (so it stays UTF-8).
pub(crate) fn c_text<const N: usize>(text: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    let mut end = text.len().min(N.saturating_sub(1));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (o, b) in out.iter_mut().zip(&text.as_bytes()[..end]) {
        *o = *b as c_char;
    }
    out
}

/// Writes the first `size` bytes of `value` to `out` (a versioned struct
/// whose caller said how much of it it knows: `size` at most
/// `size_of::<T>()`).
///
/// # Safety
/// If not NULL, `out` must be valid for writing `size` bytes.
pub(crate) unsafe fn write_prefix<T: Copy>(
    out: *mut T,
    value: &T,
    size: usize,
) -> Result<(), otlpflow_result> {
    if out.is_null() {
        return Err(otlpflow_result::NullArgument);
    }
    if !out.is_aligned() || size > std::mem::size_of::<T>() {
        return Err(otlpflow_result::InvalidArgument);
    }
    // SAFETY: `out` is writable for `size` bytes by the caller's contract,
    // `value` is readable for `size <= size_of::<T>()` bytes, and the two do
    // not overlap (`value` is ours). `T: Copy` has no drop to skip.
    unsafe {
        std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), out.cast::<u8>(), size)
    };
    Ok(())
}

/// Reads the `size_t` at the start of a versioned struct (its `size`).
///
/// # Safety
/// If not NULL, `ptr` must be valid for reading a `usize`.
pub(crate) unsafe fn read_size<T>(ptr: *const T) -> Result<usize, otlpflow_result> {
    let p = ptr.cast::<usize>();
    if p.is_null() {
        return Err(otlpflow_result::NullArgument);
    }
    if !p.is_aligned() {
        return Err(otlpflow_result::InvalidArgument);
    }
    // SAFETY: non-NULL, aligned, readable by the caller's contract.
    Ok(unsafe { p.read() })
}
