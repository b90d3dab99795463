//! Span templates and attribute sets over the C ABI: two opaque handle
//! types, made once and then shared by any number of threads, and the
//! record calls that take them.

use otlpflow::{AttributeSet, SpanKind, SpanTemplate, TemplateSpan};

use crate::enums::otlpflow_span_kind;
use crate::pipeline::{otlpflow_pipeline, otlpflow_scope, record_result, with_span};
use crate::ptr::{
    free_handle, handle_ref, into_handle, otlpflow_str, ref_of, str_of, write_out, Handle,
};
use crate::signals::{
    attribute_list, otlpflow_log_record, otlpflow_metric_point, record_log, record_metric,
};
use crate::span::{otlpflow_attribute, otlpflow_span, KvPool, ValuePool};
use crate::{ffi_boundary, otlpflow_result, result_of, R};

/// An attribute list encoded once (`otlpflow_attribute_set_new`), for the
/// `_with_set` record calls: its attributes go before the record's own,
/// copied rather than encoded again. Immutable: use it from any number of
/// threads; free it with `otlpflow_attribute_set_free` once none does.
pub struct otlpflow_attribute_set {
    set: AttributeSet,
}

impl Handle for otlpflow_attribute_set {
    const KIND: u64 = 4;
}

/// A span's name, kind and static attributes encoded once for one scope of
/// one pipeline (`otlpflow_pipeline_span_template`), for
/// `otlpflow_pipeline_record_templated_span`. Immutable: use it from any
/// number of threads; free it with `otlpflow_span_template_free`.
pub struct otlpflow_span_template {
    pub(crate) template: SpanTemplate,
}

impl Handle for otlpflow_span_template {
    const KIND: u64 = 5;
}

/// Encodes `attributes` (up to `OTLPFLOW_MAX_ATTRIBUTES`, copied) into a new
/// attribute set, written to `*out`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_attribute_set_new(
    attributes: *const otlpflow_attribute,
    attributes_len: usize,
    out: *mut *mut otlpflow_attribute_set,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        if out.is_null() {
            return R::NullArgument;
        }
        let mut values = ValuePool::new();
        let mut kvs = KvPool::new();
        // SAFETY: every pointer in the list is valid for this call, per the
        // contract.
        let list = unsafe { attribute_list(attributes, attributes_len, &mut values, &mut kvs) };
        let attrs = match list {
            Ok(a) => a,
            Err(e) => return e,
        };
        let handle = match into_handle(otlpflow_attribute_set {
            set: AttributeSet::new(attrs),
        }) {
            Ok(h) => h,
            Err(e) => return e,
        };
        // SAFETY: checked non-NULL above; writable per the contract.
        result_of(unsafe { write_out(out, handle) })
    })
}

/// Frees an attribute set. NULL is fine; a handle already freed, or one of
/// another type, returns `OTLPFLOW_RESULT_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn otlpflow_attribute_set_free(set: *mut otlpflow_attribute_set) -> otlpflow_result {
    ffi_boundary!(R::Panic, { result_of(free_handle(set)) })
}

/// Encodes a span's `name`, `kind` (an `otlpflow_span_kind`) and static
/// `attributes` once, for `scope`; the template is written to `*out`.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn otlpflow_pipeline_span_template(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    name: otlpflow_str,
    kind: u32,
    attributes: *const otlpflow_attribute,
    attributes_len: usize,
    out: *mut *mut otlpflow_span_template,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, sc, name) = match unsafe { (handle_ref(pipeline), ref_of(scope), str_of(name)) } {
            (Ok(p), Ok(sc), Ok(n)) => (p, sc, n),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        if out.is_null() {
            return R::NullArgument;
        }
        let kind: SpanKind = match otlpflow_span_kind::from_u32(kind) {
            Ok(k) => k.to_rust(),
            Err(e) => return e,
        };
        let mut values = ValuePool::new();
        let mut kvs = KvPool::new();
        // SAFETY: every pointer in the list is valid for this call.
        let list = unsafe { attribute_list(attributes, attributes_len, &mut values, &mut kvs) };
        let attrs = match list {
            Ok(a) => a,
            Err(e) => return e,
        };
        let scope = otlpflow::Scope::from_parts(sc.id, sc.pipeline);
        let template = p.pipeline.template(&scope, name, kind, attrs);
        let handle = match into_handle(otlpflow_span_template { template }) {
            Ok(h) => h,
            Err(e) => return e,
        };
        // SAFETY: checked non-NULL above; writable per the contract.
        result_of(unsafe { write_out(out, handle) })
    })
}

/// Frees a span template. NULL is fine; a handle already freed, or one of
/// another type, returns `OTLPFLOW_RESULT_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn otlpflow_span_template_free(
    tmpl: *mut otlpflow_span_template,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, { result_of(free_handle(tmpl)) })
}

/// Records one span made from template `tmpl`: the span's name must be empty and
/// its kind `OTLPFLOW_SPAN_KIND_UNSPECIFIED` (the template's are used, else
/// `OTLPFLOW_RESULT_INVALID_ARGUMENT`); its attributes follow the
/// template's. A template of another pipeline returns
/// `OTLPFLOW_RESULT_INVALID_SCOPE`. Other results as for
/// `otlpflow_pipeline_record_span`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_templated_span(
    pipeline: *const otlpflow_pipeline,
    tmpl: *const otlpflow_span_template,
    span: *const otlpflow_span,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract; no thread frees the template
        // during the call.
        let (p, t, s) = match unsafe { (handle_ref(pipeline), handle_ref(tmpl), ref_of(span)) } {
            (Ok(p), Ok(t), Ok(s)) => (p, t, s),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        if s.name.len != 0 || s.kind != 0 {
            return R::InvalidArgument;
        }
        let recorded = with_span(s, |span| {
            p.pipeline
                .record_templated(&t.template, &TemplateSpan::from(span))
        });
        match recorded {
            Ok(r) => record_result(r),
            Err(e) => e,
        }
    })
}

/// Checks the arguments of a `_with_set` record call and hands them to
/// `record`.
///
/// # Safety
/// As the `_with_set` functions' contract: each pointer NULL or valid for
/// the call, the handles not freed during it.
unsafe fn with_set<T>(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    rec: *const T,
    set: *const otlpflow_attribute_set,
    record: impl FnOnce(&otlpflow_pipeline, &otlpflow_scope, &T, &AttributeSet) -> otlpflow_result,
) -> otlpflow_result {
    // SAFETY: forwarded to this function's contract.
    let args = unsafe {
        (
            handle_ref(pipeline),
            ref_of(scope),
            ref_of(rec),
            handle_ref(set),
        )
    };
    match args {
        (Ok(p), Ok(sc), Ok(r), Ok(set)) => record(p, sc, r, &set.set),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => e,
    }
}

/// Records one span with `set`'s attributes before its own. Results as for
/// `otlpflow_pipeline_record_span`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_span_with_set(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    span: *const otlpflow_span,
    set: *const otlpflow_attribute_set,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract; no thread frees the set during
        // the call.
        unsafe {
            with_set(pipeline, scope, span, set, |p, sc, s, set| {
                let scope = otlpflow::Scope::from_parts(sc.id, sc.pipeline);
                let recorded = with_span(s, |span| {
                    let with_set = otlpflow::Span {
                        attribute_set: Some(set),
                        ..*span
                    };
                    p.pipeline.record_span(&scope, &with_set)
                });
                match recorded {
                    Ok(r) => record_result(r),
                    Err(e) => e,
                }
            })
        }
    })
}

/// Records one log record with `set`'s attributes before its own. Results
/// as for `otlpflow_pipeline_record_log`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_log_with_set(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    log: *const otlpflow_log_record,
    set: *const otlpflow_attribute_set,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        unsafe {
            with_set(pipeline, scope, log, set, |p, sc, l, set| {
                record_log(p, sc, l, Some(set))
            })
        }
    })
}

/// Records one metric data point with `set`'s attributes before its own.
/// Results as for `otlpflow_pipeline_record_metric`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_metric_with_set(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    point: *const otlpflow_metric_point,
    set: *const otlpflow_attribute_set,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        unsafe {
            with_set(pipeline, scope, point, set, |p, sc, m, set| {
                record_metric(p, sc, m, Some(set))
            })
        }
    })
}
