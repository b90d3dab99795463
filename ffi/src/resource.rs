//! What an SDK drop-in needs from the pipeline: the SDK's resource and
//! instrumentation scopes with their attributes, carried over into the
//! pipeline's requests, and counting what it could not hand over.

use otlpflow::{OwnedValue, Value};

use crate::pipeline::{otlpflow_pipeline, otlpflow_scope};
use crate::ptr::{handle_ref, slice_of, str_of, write_out};
use crate::span::{is_array, otlpflow_attribute, scalar_of, OTLPFLOW_MAX_ATTRIBUTES};
use crate::{ffi_boundary, otlpflow_result, R};

/// Owned copies of `len` attributes (scalars, and arrays of scalars).
///
/// # Safety
/// `ptr` is NULL with `len` 0, or valid for reads of `len` attributes
/// whose strings and arrays are valid for reads of their lengths.
unsafe fn owned(
    ptr: *const otlpflow_attribute,
    len: usize,
) -> Result<Vec<(String, OwnedValue)>, otlpflow_result> {
    if len > OTLPFLOW_MAX_ATTRIBUTES {
        return Err(R::TooManyAttributes);
    }
    // SAFETY: forwarded to the caller's contract.
    let list = unsafe { slice_of(ptr, len)? };
    let scalar = |v| -> Result<OwnedValue, otlpflow_result> {
        // SAFETY: forwarded to the caller's contract.
        Ok(match unsafe { scalar_of(v)? } {
            Value::Str(s) => OwnedValue::Str(s.to_owned()),
            Value::Bool(b) => OwnedValue::Bool(b),
            Value::I64(i) => OwnedValue::I64(i),
            Value::F64(f) => OwnedValue::F64(f),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            _ => return Err(R::InvalidArgument),
        })
    };
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        // SAFETY: forwarded to the caller's contract.
        let key = unsafe { str_of(a.key)? };
        if key.is_empty() {
            return Err(R::InvalidArgument);
        }
        let value = if is_array(&a.value) {
            // SAFETY: forwarded to the caller's contract.
            let items = unsafe { slice_of(a.value.array, a.value.array_len)? };
            if items.len() > OTLPFLOW_MAX_ATTRIBUTES {
                return Err(R::TooManyAttributes);
            }
            OwnedValue::Array(items.iter().map(scalar).collect::<Result<_, _>>()?)
        } else {
            scalar(&a.value)?
        };
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// Registers (or finds) an instrumentation scope with attributes, written
/// to `*out`; a scope is the same one when its name, version and
/// attributes are.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_scope_with_attributes(
    pipeline: *const otlpflow_pipeline,
    name: crate::otlpflow_str,
    version: crate::otlpflow_str,
    attributes: *const otlpflow_attribute,
    attributes_len: usize,
    out: *mut otlpflow_scope,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, n, v) = match unsafe { (handle_ref(pipeline), str_of(name), str_of(version)) } {
            (Ok(p), Ok(n), Ok(v)) => (p, n, v),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        // SAFETY: the attributes per the contract.
        let attrs = match unsafe { owned(attributes, attributes_len) } {
            Ok(a) => a,
            Err(e) => return e,
        };
        let (id, pid) = p.pipeline.scope_with_attributes(n, v, &attrs).to_parts();
        // SAFETY: NULL or writable.
        match unsafe { write_out(out, otlpflow_scope { id, pipeline: pid }) } {
            Ok(()) => R::Ok,
            Err(e) => e,
        }
    })
}

/// Uses `attributes` as the resource of every request from now on, if the
/// pipeline was configured with none (no service name, version or resource
/// attribute, from setters or the environment): what an SDK bridge does
/// with its SDK's resource. Once only; `*out_adopted` says whether it
/// happened.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_adopt_resource(
    pipeline: *const otlpflow_pipeline,
    attributes: *const otlpflow_attribute,
    attributes_len: usize,
    out_adopted: *mut bool,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        // SAFETY: the attributes per the contract.
        let attrs = match unsafe { owned(attributes, attributes_len) } {
            Ok(a) => a,
            Err(e) => return e,
        };
        let adopted = p.pipeline.adopt_resource(&attrs);
        if out_adopted.is_null() {
            return R::Ok;
        }
        // SAFETY: checked non-NULL; writable per the contract.
        match unsafe { write_out(out_adopted, adopted) } {
            Ok(()) => R::Ok,
            Err(e) => e,
        }
    })
}

/// Counts one record of `signal` (an `otlpflow_signal`) that the host
/// could not hand over at all (a kind of metric point the C ABI has no
/// struct for, say) as offered and dropped as `invalid`, so that the
/// pipeline's accounting includes it like any other refusal.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_count_invalid(
    pipeline: *const otlpflow_pipeline,
    signal: u32,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let signal = match crate::enums::otlpflow_signal::from_u32(signal) {
            Ok(crate::enums::otlpflow_signal::Traces) => otlpflow::Signal::Traces,
            Ok(crate::enums::otlpflow_signal::Logs) => otlpflow::Signal::Logs,
            Ok(crate::enums::otlpflow_signal::Metrics) => otlpflow::Signal::Metrics,
            Err(e) => return e,
        };
        let _ = p.pipeline.refuse_invalid(signal);
        R::Ok
    })
}
