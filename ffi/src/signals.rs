//! Log records, metric data points and instruments over the C ABI: plain C
//! structs converted without allocation (through the same stack pools as
//! spans), and one opaque handle type for the instruments.

use otlpflow::{
    AttributeSet, HistogramPoint, KeyValue, LogRecord, MetricData, MetricPoint, Number, Scope,
    Severity, Temporality, Value,
};

use crate::enums::{otlpflow_instrument_kind, otlpflow_metric_type};
use crate::pipeline::{otlpflow_pipeline, otlpflow_scope, record_result};
use crate::ptr::{
    free_handle, handle_ref, into_handle, otlpflow_str, ref_of, slice_of, str_of, write_out, Handle,
};
use crate::span::{
    is_array, otlpflow_attribute, otlpflow_value, scalar_of, KvPool, ValuePool,
    OTLPFLOW_MAX_ATTRIBUTES,
};
use crate::{ffi_boundary, otlpflow_result, result_of, R};

/// A log record. Zero-initialise it, then fill what you have; pointers are
/// borrowed for the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_log_record {
    /// When the event happened, ns since the Unix epoch (0: unknown).
    pub time_unix_nano: u64,
    /// When it was observed.
    pub observed_time_unix_nano: u64,
    /// OTLP severity number, 0-24 (9 is INFO, 13 WARN, 17 ERROR).
    pub severity_number: u32,
    /// Severity as the source spells it.
    pub severity_text: otlpflow_str,
    /// Whether `body` is set.
    pub has_body: bool,
    /// The body (a string, usually).
    pub body: otlpflow_value,
    /// Attributes (may be NULL when `attributes_len` is 0).
    pub attributes: *const otlpflow_attribute,
    /// Number of attributes (at most `OTLPFLOW_MAX_ATTRIBUTES`).
    pub attributes_len: usize,
    /// Attributes discarded before recording.
    pub dropped_attributes_count: u32,
    /// W3C trace flags.
    pub flags: u32,
    /// Trace id (all zero: none).
    pub trace_id: [u8; 16],
    /// Span id (all zero: none).
    pub span_id: [u8; 8],
    /// Event name, for log records that are events.
    pub event_name: otlpflow_str,
}

/// One metric data point with its metric's identity.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_metric_point {
    /// Metric name (required).
    pub name: otlpflow_str,
    /// Description.
    pub description: otlpflow_str,
    /// Unit (UCUM).
    pub unit: otlpflow_str,
    /// Attributes (may be NULL when `attributes_len` is 0).
    pub attributes: *const otlpflow_attribute,
    /// Number of attributes.
    pub attributes_len: usize,
    /// Start of the interval, ns since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// When the point was taken.
    pub time_unix_nano: u64,
    /// Data point flags.
    pub flags: u32,
    /// An `otlpflow_metric_type`.
    pub type_: u32,
    /// Sums and histograms: 1 delta, 2 cumulative.
    pub temporality: u32,
    /// Sums: only goes up.
    pub monotonic: bool,
    /// Gauges and sums: the value is `as_double` (else `as_int`).
    pub is_double: bool,
    /// Integer value.
    pub as_int: i64,
    /// Double value.
    pub as_double: f64,
    /// Histograms: values recorded (the sum of `bucket_counts`).
    pub count: u64,
    /// Histograms: whether `sum` is set.
    pub has_sum: bool,
    /// Histograms: sum of the values.
    pub sum: f64,
    /// Histograms: whether `min` and `max` are set.
    pub has_min_max: bool,
    /// Histograms: least value.
    pub min: f64,
    /// Histograms: greatest value.
    pub max: f64,
    /// Histograms: bucket bounds, strictly increasing.
    pub bounds: *const f64,
    /// Histograms: number of bounds.
    pub bounds_len: usize,
    /// Histograms: counts per bucket (`bounds_len + 1` of them).
    pub bucket_counts: *const u64,
    /// Histograms: number of bucket counts.
    pub bucket_counts_len: usize,
}

/// Converts one attribute list through the pools.
///
/// # Safety
/// Every pointer in the list (recursively) must be NULL with a zero length,
/// or valid for reads of its length, for `'s`.
pub(crate) unsafe fn attribute_list<'s: 'v, 'v: 'k, 'k>(
    ptr: *const otlpflow_attribute,
    len: usize,
    values: &'v mut ValuePool<'s>,
    kvs: &'k mut KvPool<'v>,
) -> Result<&'k [KeyValue<'v>], otlpflow_result> {
    if len > OTLPFLOW_MAX_ATTRIBUTES {
        return Err(R::TooManyAttributes);
    }
    // SAFETY: forwarded to this function's contract.
    let list = unsafe { slice_of(ptr, len)? };
    for a in list {
        if is_array(&a.value) {
            // SAFETY: forwarded.
            for el in unsafe { slice_of(a.value.array, a.value.array_len)? } {
                // SAFETY: forwarded.
                let v = unsafe { scalar_of(el)? };
                values.try_push(v).map_err(|_| R::TooManyAttributes)?;
            }
        }
    }
    let values: &'v [Value<'s>] = values;
    let mut next = 0;
    for a in list {
        let value = if is_array(&a.value) {
            let n = a.value.array_len;
            let v = Value::Array(&values[next..next + n]);
            next += n;
            v
        } else {
            // SAFETY: forwarded.
            unsafe { scalar_of(&a.value)? }
        };
        // SAFETY: forwarded.
        let key = unsafe { str_of(a.key)? };
        kvs.try_push(KeyValue::new(key, value))
            .map_err(|_| R::TooManyAttributes)?;
    }
    Ok(kvs)
}

fn scope_of(sc: &otlpflow_scope) -> Scope {
    Scope::from_parts(sc.id, sc.pipeline)
}

/// Records one log record. Results as for `otlpflow_pipeline_record_span`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_log(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    log: *const otlpflow_log_record,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, sc, l) = match unsafe { (handle_ref(pipeline), ref_of(scope), ref_of(log)) } {
            (Ok(p), Ok(sc), Ok(l)) => (p, sc, l),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        record_log(p, sc, l, None)
    })
}

/// Records a C log record with `set`'s attributes before its own.
pub(crate) fn record_log(
    p: &otlpflow_pipeline,
    sc: &otlpflow_scope,
    l: &otlpflow_log_record,
    set: Option<&AttributeSet>,
) -> otlpflow_result {
    if l.severity_number > 24 {
        return R::InvalidArgument;
    }
    let mut values = ValuePool::new();
    let mut kvs = KvPool::new();
    // SAFETY: every pointer in the record is valid for this call.
    let list = unsafe { attribute_list(l.attributes, l.attributes_len, &mut values, &mut kvs) };
    let attrs = match list {
        Ok(a) => a,
        Err(e) => return e,
    };
    let body = if l.has_body {
        // Array bodies are not supported over the C ABI (a string or
        // scalar is what log bodies are in practice): `scalar_of` refuses
        // them.
        // SAFETY: every pointer in the record is valid for this call.
        match unsafe { scalar_of(&l.body) } {
            Ok(v) => Some(v),
            Err(e) => return e,
        }
    } else {
        None
    };
    // SAFETY: valid for this call per the contract.
    let (text, event) = match unsafe { (str_of(l.severity_text), str_of(l.event_name)) } {
        (Ok(t), Ok(e)) => (t, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let rec = LogRecord {
        time_unix_nano: l.time_unix_nano,
        observed_time_unix_nano: l.observed_time_unix_nano,
        severity_number: Severity(l.severity_number as u8),
        severity_text: text,
        body,
        attribute_set: set,
        attributes: attrs,
        dropped_attributes_count: l.dropped_attributes_count,
        flags: l.flags,
        trace_id: l.trace_id,
        span_id: l.span_id,
        event_name: event,
    };
    record_result(p.pipeline.record_log(&scope_of(sc), &rec))
}

/// Records one metric data point the host aggregated. A malformed point
/// (no name, unknown type, buckets that do not match the bounds or the
/// count) returns `OTLPFLOW_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_metric(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    point: *const otlpflow_metric_point,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, sc, m) = match unsafe { (handle_ref(pipeline), ref_of(scope), ref_of(point)) } {
            (Ok(p), Ok(sc), Ok(m)) => (p, sc, m),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        record_metric(p, sc, m, None)
    })
}

/// Records a C metric point with `set`'s attributes before its own.
pub(crate) fn record_metric(
    p: &otlpflow_pipeline,
    sc: &otlpflow_scope,
    m: &otlpflow_metric_point,
    set: Option<&AttributeSet>,
) -> otlpflow_result {
    let mut values = ValuePool::new();
    let mut kvs = KvPool::new();
    // SAFETY: every pointer in the point is valid for this call.
    let list = unsafe { attribute_list(m.attributes, m.attributes_len, &mut values, &mut kvs) };
    let attrs = match list {
        Ok(a) => a,
        Err(e) => return e,
    };
    // SAFETY: valid for this call per the contract.
    let strs = unsafe { (str_of(m.name), str_of(m.description), str_of(m.unit)) };
    let (name, description, unit) = match strs {
        (Ok(n), Ok(d), Ok(u)) => (n, d, u),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    let kind = match otlpflow_metric_type::from_u32(m.type_) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let temporality = match m.temporality {
        1 => Temporality::Delta,
        2 => Temporality::Cumulative,
        _ if kind == otlpflow_metric_type::Gauge => Temporality::Cumulative,
        _ => return R::InvalidArgument,
    };
    let number = if m.is_double {
        Number::F64(m.as_double)
    } else {
        Number::I64(m.as_int)
    };
    // SAFETY: valid for reads of their lengths for this call.
    let arrays = unsafe {
        (
            slice_of(m.bounds, m.bounds_len),
            slice_of(m.bucket_counts, m.bucket_counts_len),
        )
    };
    let (bounds, counts) = match arrays {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let data = match kind {
        otlpflow_metric_type::Gauge => MetricData::Gauge(number),
        otlpflow_metric_type::Sum => MetricData::Sum {
            value: number,
            monotonic: m.monotonic,
            temporality,
        },
        otlpflow_metric_type::Histogram => MetricData::Histogram {
            point: HistogramPoint {
                count: m.count,
                sum: m.has_sum.then_some(m.sum),
                min: m.has_min_max.then_some(m.min),
                max: m.has_min_max.then_some(m.max),
                bounds,
                bucket_counts: counts,
            },
            temporality,
        },
    };
    let point = MetricPoint {
        name,
        description,
        unit,
        attribute_set: set,
        attributes: attrs,
        start_time_unix_nano: m.start_time_unix_nano,
        time_unix_nano: m.time_unix_nano,
        flags: m.flags,
        data,
    };
    record_result(p.pipeline.record_metric(&scope_of(sc), &point))
}

enum Inst {
    Counter(otlpflow::Counter),
    UpDown(otlpflow::UpDownCounter),
    Gauge(otlpflow::Gauge),
    Histogram(otlpflow::Histogram),
}

/// A lock-free instrument of a pipeline. Use it from any number of threads;
/// free it with `otlpflow_instrument_free` (its values are still collected
/// by the pipeline).
pub struct otlpflow_instrument {
    inst: Inst,
}

impl Handle for otlpflow_instrument {
    const KIND: u64 = 3;
}

/// Makes an instrument. `bounds` (histograms only; NULL and 0 for the
/// OpenTelemetry default buckets) must be finite and strictly increasing.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn otlpflow_pipeline_instrument(
    pipeline: *const otlpflow_pipeline,
    scope: *const otlpflow_scope,
    kind: u32,
    name: otlpflow_str,
    unit: otlpflow_str,
    description: otlpflow_str,
    bounds: *const f64,
    bounds_len: usize,
    out: *mut *mut otlpflow_instrument,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract.
        let (p, sc) = match unsafe { (handle_ref(pipeline), ref_of(scope)) } {
            (Ok(p), Ok(sc)) => (p, sc),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        if out.is_null() {
            return R::NullArgument;
        }
        // SAFETY: valid for this call per the contract.
        let strs = unsafe { (str_of(name), str_of(unit), str_of(description)) };
        let (name, unit, description) = match strs {
            (Ok(n), Ok(u), Ok(d)) => (n, u, d),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        if name.is_empty() {
            return R::InvalidArgument;
        }
        let scope = scope_of(sc);
        let pl = &p.pipeline;
        let kind = match otlpflow_instrument_kind::from_u32(kind) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let inst = match kind {
            otlpflow_instrument_kind::Counter => {
                Inst::Counter(pl.counter(&scope, name, unit, description))
            }
            otlpflow_instrument_kind::UpDownCounter => {
                Inst::UpDown(pl.up_down_counter(&scope, name, unit, description))
            }
            otlpflow_instrument_kind::Gauge => {
                Inst::Gauge(pl.gauge(&scope, name, unit, description))
            }
            otlpflow_instrument_kind::Histogram => {
                // SAFETY: valid for reads of its length for this call.
                let b = match unsafe { slice_of(bounds, bounds_len) } {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                match pl.histogram(&scope, name, unit, description, b) {
                    Ok(h) => Inst::Histogram(h),
                    Err(_) => return R::InvalidArgument,
                }
            }
        };
        let handle = match into_handle(otlpflow_instrument { inst }) {
            Ok(h) => h,
            Err(e) => return e,
        };
        // SAFETY: checked non-NULL above; writable per the contract.
        result_of(unsafe { write_out(out, handle) })
    })
}

/// Records `value` with these attributes: adds it (counters; a counter
/// takes non-negative whole numbers, an up-down counter whole numbers),
/// sets it (gauge) or records it (histogram). No lock, no allocation when
/// the attributes come sorted by key.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_instrument_record(
    instrument: *const otlpflow_instrument,
    value: f64,
    attributes: *const otlpflow_attribute,
    attributes_len: usize,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let i = match unsafe { handle_ref(instrument) } {
            Ok(i) => i,
            Err(e) => return e,
        };
        if !value.is_finite() {
            // A histogram counts what it drops (`dropped_measurements`); the
            // caller is told too. Counters and gauges only tell.
            if let Inst::Histogram(h) = &i.inst {
                h.record(value, &[]);
            }
            return R::InvalidArgument;
        }
        let mut values = ValuePool::new();
        let mut kvs = KvPool::new();
        let converted =
            // SAFETY: every pointer in the list is valid for this call.
            unsafe { attribute_list(attributes, attributes_len, &mut values, &mut kvs) };
        let attrs = match converted {
            Ok(a) => a,
            Err(e) => return e,
        };
        let whole = value.fract() == 0.0 && value.abs() < 9.007_199_254_740_992e15;
        match &i.inst {
            Inst::Counter(c) if whole && value >= 0.0 => c.add(value as u64, attrs),
            Inst::UpDown(c) if whole => c.add(value as i64, attrs),
            Inst::Gauge(g) => g.set(value, attrs),
            Inst::Histogram(h) => h.record(value, attrs),
            _ => return R::InvalidArgument,
        }
        R::Ok
    })
}

/// Frees an instrument handle. NULL is fine (`OK`); a handle already
/// freed, or one that is not an instrument, returns
/// `OTLPFLOW_RESULT_INVALID_HANDLE` and frees nothing.
#[no_mangle]
pub extern "C" fn otlpflow_instrument_free(
    instrument: *mut otlpflow_instrument,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, { result_of(free_handle(instrument)) })
}

/// Collects every instrument now (the pipeline also does it every metrics
/// interval, and on flush and shutdown); writes the points recorded.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_collect_metrics(
    pipeline: *const otlpflow_pipeline,
    points: *mut u64,
) -> otlpflow_result {
    ffi_boundary!(R::Panic, {
        // SAFETY: not freed during the call, per the contract.
        let p = match unsafe { handle_ref(pipeline) } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let n = p.pipeline.collect_metrics();
        if !points.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            let _ = unsafe { write_out(points, n) };
        }
        R::Ok
    })
}
