//! Every raw-pointer conversion of the C ABI, in one place (after
//! rustls-ffi's `ffi.rs`): API files call these and contain no casts of
//! their own. Each check turns a bad pointer or length into a result code.

use std::collections::HashSet;
use std::os::raw::c_char;

use registry::Registry;

use crate::otlpflow_result;

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
    // SAFETY: forwarded to the caller's contract; `as_ref` checks NULL.
    unsafe { ptr.as_ref() }.ok_or(otlpflow_result::NullArgument)
}

/// Borrows `*ptr` mutably.
///
/// # Safety
/// If not NULL, `ptr` must point to a valid `T` for `'a`, not aliased.
pub(crate) unsafe fn mut_of<'a, T>(ptr: *mut T) -> Result<&'a mut T, otlpflow_result> {
    // SAFETY: forwarded to the caller's contract; `as_mut` checks NULL.
    unsafe { ptr.as_mut() }.ok_or(otlpflow_result::NullArgument)
}

/// Writes `value` to an out-parameter.
///
/// # Safety
/// If not NULL, `out` must be valid for writing a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) -> Result<(), otlpflow_result> {
    if out.is_null() {
        return Err(otlpflow_result::NullArgument);
    }
    // SAFETY: non-NULL and writable by the caller's contract; `write` does
    // not read or drop the old (possibly uninitialised) value.
    unsafe { out.write(value) };
    Ok(())
}

/// Boxes a handle, registers its address, and returns it to C.
pub(crate) fn into_handle<T: 'static + Send>(value: T) -> *mut T {
    let p = Box::into_raw(Box::new(value));
    Registry::global().insert(p as usize);
    p
}

/// Frees a handle made by [`into_handle`]. NULL, an address that is not a
/// live handle, and a second free of the same handle are ignored.
///
/// # Safety
/// `ptr` must be NULL or a value returned by `into_handle::<T>` (with the
/// same `T`).
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    if ptr.is_null() || !Registry::global().remove(ptr as usize) {
        return;
    }
    // SAFETY: the registry held the address, so it came from
    // `Box::into_raw` in `into_handle` and has not been freed since.
    drop(unsafe { Box::from_raw(ptr) });
}

/// Live handle addresses, to detect double frees without touching freed
/// memory. Only `_new`/`_start` and `_free` take its lock.
mod registry {
    use super::HashSet;
    use std::sync::{Mutex, OnceLock};

    pub struct Registry(Mutex<HashSet<usize>>);

    impl Registry {
        pub fn global() -> &'static Registry {
            static R: OnceLock<Registry> = OnceLock::new();
            R.get_or_init(|| Registry(Mutex::new(HashSet::new())))
        }

        pub fn insert(&self, addr: usize) {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(addr);
        }

        pub fn remove(&self, addr: usize) -> bool {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&addr)
        }
    }
}
