//! Spans handed over as the Python objects themselves: the Python
//! binding's fast path on CPython. Where `marshal` (see `pyspans`) costs a
//! serialisation in Python and a parse here, this walks the batch's lists,
//! dicts, strings and integers directly, through CPython entry points the
//! binding takes from `ctypes.pythonapi` and hands over in an
//! [`otlpflow_python_api`]: the library links no Python and stays a plain
//! ctypes one.
//!
//! Two calls per batch. `otlpflow_python_stage_spans`, called with the GIL
//! held (a `ctypes.PYFUNCTYPE` function), copies what the spans hold into
//! this thread's staging area, in the form the marshal reader produces
//! (`marshal::Parsed`): nothing of the Python objects is kept, so nothing
//! can change or be freed under the encoder. `otlpflow_pipeline_record_staged_spans`,
//! called without the GIL, records the staged spans exactly as the marshal
//! path does. A value of a type a span cannot hold, nesting past
//! `MAX_DEPTH`, or a lone surrogate refuses the span holding it, as on the
//! marshal path; a batch whose objects are shared so often that its walk
//! would exceed `MAX_ITEMS` objects (marshal writes a shared object once)
//! is refused whole, and the binding hands it over through marshal instead.
//!
//! What this trusts, and why that holds: the object layout offsets and the
//! type objects come from the binding, which checks them against live
//! objects before it uses this path (and uses marshal where they differ:
//! another implementation, a free-threaded build). The walk runs under the
//! GIL and calls only entry points that run no Python code for the exact
//! types it hands them, so no object it reads changes or goes away during
//! the call.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void};

use otlpflow::Scope;

use crate::marshal::{Obj, Parsed};
use crate::ptr::{handle_ref, ref_of, write_out};
use crate::R;

mod walk;
use walk::{stage, Api, StageError};

/// A Python object (`PyObject`, named apart from Python.h's), opaque
/// here: reached only through the offsets and entry points of
/// `otlpflow_python_api`.
pub type otlpflow_py_object = c_void;

/// The CPython entry points, type objects and object layout the walk
/// uses, as the Python binding finds them in its own interpreter
/// (`ctypes.pythonapi`, `id()` of the types, offsets checked against live
/// objects). Every field is required.
#[repr(C)]
pub struct otlpflow_python_api {
    /// Offset of `ob_type` in every object.
    pub ob_type_offset: usize,
    /// Offset of `ob_size` in a list or tuple.
    pub ob_size_offset: usize,
    /// Offset of a list's pointer to its items.
    pub list_items_offset: usize,
    /// Offset of a tuple's items (inline).
    pub tuple_items_offset: usize,
    /// `None`.
    pub none: *const c_void,
    /// `True`.
    pub true_object: *const c_void,
    /// The exact types read: `str`, `int`, `bool`, `float`, `bytes`,
    /// `list`, `tuple`, `dict`.
    pub str_type: *const c_void,
    pub int_type: *const c_void,
    pub bool_type: *const c_void,
    pub float_type: *const c_void,
    pub bytes_type: *const c_void,
    pub list_type: *const c_void,
    pub tuple_type: *const c_void,
    pub dict_type: *const c_void,
    /// The `int` 64 (for the high half of a 128-bit id).
    pub sixty_four: *const c_void,
    /// `PyUnicode_AsUTF8AndSize`.
    pub unicode_as_utf8_and_size:
        Option<unsafe extern "C" fn(*mut otlpflow_py_object, *mut isize) -> *const c_char>,
    /// `PyLong_AsLongLongAndOverflow`.
    pub long_as_long_long_and_overflow:
        Option<unsafe extern "C" fn(*mut otlpflow_py_object, *mut c_int) -> i64>,
    /// `PyLong_AsUnsignedLongLongMask`.
    pub long_as_unsigned_long_long_mask:
        Option<unsafe extern "C" fn(*mut otlpflow_py_object) -> u64>,
    /// `PyLong_AsUnsignedLongLong`.
    pub long_as_unsigned_long_long: Option<unsafe extern "C" fn(*mut otlpflow_py_object) -> u64>,
    /// `PyNumber_Rshift`.
    pub number_rshift: Option<
        unsafe extern "C" fn(
            *mut otlpflow_py_object,
            *mut otlpflow_py_object,
        ) -> *mut otlpflow_py_object,
    >,
    /// `Py_DecRef`.
    pub dec_ref: Option<unsafe extern "C" fn(*mut otlpflow_py_object)>,
    /// `PyDict_Size`.
    pub dict_size: Option<unsafe extern "C" fn(*mut otlpflow_py_object) -> isize>,
    /// `PyDict_Next`.
    pub dict_next: Option<
        unsafe extern "C" fn(
            *mut otlpflow_py_object,
            *mut isize,
            *mut *mut otlpflow_py_object,
            *mut *mut otlpflow_py_object,
        ) -> c_int,
    >,
    /// `PyFloat_AsDouble`.
    pub float_as_double: Option<unsafe extern "C" fn(*mut otlpflow_py_object) -> f64>,
    /// `PyBytes_AsStringAndSize`.
    pub bytes_as_string_and_size: Option<
        unsafe extern "C" fn(*mut otlpflow_py_object, *mut *mut c_char, *mut isize) -> c_int,
    >,
    /// `PyErr_Occurred`.
    pub err_occurred: Option<unsafe extern "C" fn() -> *mut otlpflow_py_object>,
    /// `PyErr_Clear`.
    pub err_clear: Option<unsafe extern "C" fn()>,
}

/// A batch copied out of Python objects: strings and big integers in
/// `buf`, objects in `items` (the top list at index 0), as
/// `marshal::Parsed` holds them.
#[derive(Default)]
struct Staged {
    buf: Vec<u8>,
    items: Vec<Obj>,
    /// The walk's string cache, `STRING_CACHE` slots (address 0: empty).
    strings: Vec<(usize, Obj)>,
    /// Whether `buf` and `items` hold a batch not recorded yet.
    ready: bool,
}

impl Staged {
    /// Frees what an unusually large batch grew the staging area to: kept
    /// for the next batch are up to 4 MiB of arena and of string bytes.
    fn release_excess(&mut self) {
        const KEEP: usize = 4 << 20;
        if self.items.capacity() * std::mem::size_of::<Obj>() > KEEP {
            self.items = Vec::new();
        }
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
    }
}

thread_local! {
    /// This thread's staging area: filled by `otlpflow_python_stage_spans`,
    /// emptied by the `otlpflow_pipeline_record_staged_spans` that follows
    /// it on the same thread. Its allocations stay for the next batch.
    static STAGED: RefCell<Staged> = RefCell::new(Staged::default());
}

/// Copies a batch of Python span records (a `list` of the records
/// `otlpflow_pipeline_record_marshalled_spans` takes, the objects
/// themselves rather than their marshal bytes) into this thread's staging
/// area, for the `otlpflow_pipeline_record_staged_spans` that follows.
/// Meant for the Python binding only: call it with the GIL held (a
/// `ctypes.PYFUNCTYPE` function), `spans` a `py_object`, and `api` filled
/// from the same interpreter. `OTLPFLOW_RESULT_INVALID_ARGUMENT` if `api`
/// lacks an entry, `spans` is not a list, or the batch is too large to
/// stage (the binding then marshals it instead); after an error nothing is
/// staged.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_python_stage_spans(
    api: *const otlpflow_python_api,
    spans: *mut c_void,
) -> crate::otlpflow_result {
    crate::ffi_boundary!(R::Panic, {
        // SAFETY: a readable `otlpflow_python_api` per the contract.
        let api = match unsafe { ref_of(api) } {
            Ok(a) => a,
            Err(e) => return e,
        };
        let Some(api) = Api::of(api) else {
            return R::InvalidArgument;
        };
        if spans.is_null() {
            return R::NullArgument;
        }
        let staged = STAGED.with(|cell| {
            let Ok(mut guard) = cell.try_borrow_mut() else {
                return Err(StageError::TooBig);
            };
            let staged = &mut *guard;
            staged.ready = false;
            // SAFETY: `spans` is a live object of the interpreter `api`
            // describes, and the GIL is held (the contract).
            let staged_now = unsafe {
                stage(
                    api,
                    spans,
                    &mut staged.buf,
                    &mut staged.items,
                    &mut staged.strings,
                )
            };
            match staged_now {
                Ok(()) => staged.ready = true,
                Err(_) => staged.release_excess(),
            }
            staged_now
        });
        match staged {
            Ok(()) => R::Ok,
            Err(_) => R::InvalidArgument,
        }
    })
}

/// Records the spans this thread staged last with
/// `otlpflow_python_stage_spans` (call it without the GIL), exactly as
/// `otlpflow_pipeline_record_marshalled_spans` records the same batch
/// marshalled, and empties the staging area. Writes how many spans were
/// accepted and refused. `OTLPFLOW_RESULT_INVALID_ARGUMENT` if nothing is
/// staged.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_staged_spans(
    pipeline: *const crate::pipeline::otlpflow_pipeline,
    scope: *const crate::pipeline::otlpflow_scope,
    out_accepted: *mut usize,
    out_refused: *mut usize,
) -> crate::otlpflow_result {
    crate::ffi_boundary!(R::Panic, {
        // SAFETY: a live pipeline and a scope, per the contract.
        let args = unsafe { (handle_ref(pipeline), ref_of(scope)) };
        let (p, sc) = match args {
            (Ok(p), Ok(sc)) => (p, sc),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        if out_accepted.is_null() || out_refused.is_null() {
            return R::NullArgument;
        }
        let scope = Scope::from_parts(sc.id, sc.pipeline);
        let out = STAGED.with(|cell| {
            let mut guard = cell.try_borrow_mut().ok()?;
            let staged = &mut *guard;
            if !staged.ready {
                return None;
            }
            staged.ready = false;
            let items = std::mem::take(&mut staged.items);
            // SAFETY: `stage` made every `Str` range of `items` in bounds of
            // `buf` and checked it is UTF-8, every `Bytes` and `Big` range
            // in bounds, and every container's range in bounds of `items`.
            let parsed = unsafe { Parsed::from_parts(&staged.buf, items) };
            let top = parsed.items[0];
            let out = crate::pyspans::record(&p.pipeline, &scope, &parsed, top);
            let mut items = parsed.into_items();
            items.clear();
            staged.items = items;
            staged.release_excess();
            Some(out)
        });
        let Some(out) = out else {
            return R::InvalidArgument;
        };
        // SAFETY: both checked non-NULL; writable per the contract.
        unsafe {
            let _ = write_out(out_accepted, out.accepted);
            let _ = write_out(out_refused, out.refused);
        }
        R::Ok
    })
}
