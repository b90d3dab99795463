//! The span as a plain C struct, and its conversion into the engine's
//! borrowed `Span` without allocating: attributes, array values, events and
//! links are gathered into fixed-capacity stack pools, in passes, so that
//! later passes can borrow what earlier ones filled.

use arrayvec::ArrayVec;
use otlpflow::{Event, KeyValue, Link, Span, Status, Value};

use crate::enums::{otlpflow_span_kind, otlpflow_status_code, otlpflow_value_kind};
use crate::otlpflow_result;
use crate::ptr::{bytes_of, otlpflow_str, slice_of, str_of};

/// An attribute value: set `kind`, then the matching field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_value {
    /// An `otlpflow_value_kind`.
    pub kind: u32,
    /// For `STR` and `BYTES`.
    pub str: otlpflow_str,
    /// For `I64`.
    pub i64: i64,
    /// For `F64`.
    pub f64: f64,
    /// For `BOOL`.
    pub boolean: bool,
    /// For `ARRAY`: the elements (scalars only).
    pub array: *const otlpflow_value,
    /// For `ARRAY`: the number of elements.
    pub array_len: usize,
}

/// An attribute: a key and a value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_attribute {
    /// The key (UTF-8).
    pub key: otlpflow_str,
    /// The value.
    pub value: otlpflow_value,
}

/// A time-stamped event of a span.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_event {
    /// Nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// The name (UTF-8).
    pub name: otlpflow_str,
    /// Attributes (may be NULL when `attributes_len` is 0).
    pub attributes: *const otlpflow_attribute,
    /// Number of attributes.
    pub attributes_len: usize,
    /// Attributes discarded before recording.
    pub dropped_attributes_count: u32,
}

/// A link to another span.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_link {
    /// Trace id of the linked span.
    pub trace_id: [u8; 16],
    /// Span id of the linked span.
    pub span_id: [u8; 8],
    /// W3C trace state.
    pub trace_state: otlpflow_str,
    /// Attributes (may be NULL when `attributes_len` is 0).
    pub attributes: *const otlpflow_attribute,
    /// Number of attributes.
    pub attributes_len: usize,
    /// Attributes discarded before recording.
    pub dropped_attributes_count: u32,
    /// W3C trace flags.
    pub flags: u32,
}

/// A finished span. Zero-initialise it, then fill what you have; all
/// pointers are borrowed for the duration of the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otlpflow_span {
    /// Trace id; not all zero: a span without one is refused with
    /// `OTLPFLOW_RESULT_INVALID_ARGUMENT` and counted as invalid.
    pub trace_id: [u8; 16],
    /// Span id; not all zero, likewise.
    pub span_id: [u8; 8],
    /// Parent span id; all zero for a root span.
    pub parent_span_id: [u8; 8],
    /// W3C trace state.
    pub trace_state: otlpflow_str,
    /// W3C trace flags.
    pub flags: u32,
    /// The operation name (UTF-8).
    pub name: otlpflow_str,
    /// An `otlpflow_span_kind` (`OTLPFLOW_SPAN_KIND_SERVER`, ...).
    pub kind: u32,
    /// Start, nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// Attributes (may be NULL when `attributes_len` is 0).
    pub attributes: *const otlpflow_attribute,
    /// Number of attributes (at most `OTLPFLOW_MAX_ATTRIBUTES`).
    pub attributes_len: usize,
    /// Attributes discarded before recording.
    pub dropped_attributes_count: u32,
    /// Events (may be NULL when `events_len` is 0).
    pub events: *const otlpflow_event,
    /// Number of events (at most `OTLPFLOW_MAX_EVENTS`).
    pub events_len: usize,
    /// Events discarded before recording.
    pub dropped_events_count: u32,
    /// Links (may be NULL when `links_len` is 0).
    pub links: *const otlpflow_link,
    /// Number of links (at most `OTLPFLOW_MAX_LINKS`).
    pub links_len: usize,
    /// Links discarded before recording.
    pub dropped_links_count: u32,
    /// An `otlpflow_status_code` (`OTLPFLOW_STATUS_CODE_UNSET`, `_OK`,
    /// `_ERROR`).
    pub status_code: u32,
    /// Status message (UTF-8).
    pub status_message: otlpflow_str,
}

/// Most attributes one span, event or link may carry.
pub const OTLPFLOW_MAX_ATTRIBUTES: usize = 128;
/// Most events one span may carry.
pub const OTLPFLOW_MAX_EVENTS: usize = 128;
/// Most links one span may carry.
pub const OTLPFLOW_MAX_LINKS: usize = 128;
/// Most attributes in a span with its events and links together, and most
/// array elements in all of its values together.
pub const OTLPFLOW_MAX_TOTAL_ATTRIBUTES: usize = 512;

/// The array values of a span's attributes, gathered on the stack.
pub(crate) type ValuePool<'s> = ArrayVec<Value<'s>, OTLPFLOW_MAX_TOTAL_ATTRIBUTES>;
/// The attributes of a span, its events and links, gathered on the stack.
pub(crate) type KvPool<'v> = ArrayVec<KeyValue<'v>, OTLPFLOW_MAX_TOTAL_ATTRIBUTES>;
/// A span's events.
pub(crate) type EventPool<'k> = ArrayVec<Event<'k>, OTLPFLOW_MAX_EVENTS>;
/// A span's links.
pub(crate) type LinkPool<'k> = ArrayVec<Link<'k>, OTLPFLOW_MAX_LINKS>;

/// Borrows a scalar value (an array is `InvalidArgument` here).
///
/// # Safety
/// The value's `str` must be valid for reads of its length for `'s`.
pub(crate) unsafe fn scalar_of<'s>(v: &otlpflow_value) -> Result<Value<'s>, otlpflow_result> {
    Ok(match otlpflow_value_kind::from_u32(v.kind)? {
        // SAFETY: forwarded to the caller's contract.
        otlpflow_value_kind::Str => Value::Str(unsafe { str_of(v.str)? }),
        otlpflow_value_kind::Bool => Value::Bool(v.boolean),
        otlpflow_value_kind::I64 => Value::I64(v.i64),
        otlpflow_value_kind::F64 => Value::F64(v.f64),
        otlpflow_value_kind::Bytes => {
            // SAFETY: forwarded to the caller's contract.
            Value::Bytes(unsafe { bytes_of(v.str.ptr.cast(), v.str.len)? })
        }
        otlpflow_value_kind::Array => return Err(otlpflow_result::InvalidArgument),
    })
}

/// Whether a value is an array (its elements are gathered in a pass of
/// their own).
pub(crate) fn is_array(v: &otlpflow_value) -> bool {
    v.kind == otlpflow_value_kind::Array as u32
}

/// Borrows an attribute list, checking its length.
///
/// # Safety
/// As for [`convert`].
unsafe fn attrs<'s>(
    ptr: *const otlpflow_attribute,
    len: usize,
) -> Result<&'s [otlpflow_attribute], otlpflow_result> {
    if len > OTLPFLOW_MAX_ATTRIBUTES {
        return Err(otlpflow_result::TooManyAttributes);
    }
    // SAFETY: forwarded.
    unsafe { slice_of(ptr, len) }
}

/// Converts a C span. Fails with a result code on a NULL pointer with a
/// non-zero length, invalid UTF-8, an unknown enum value or too many items.
///
/// # Safety
/// Every pointer in `s` (recursively) must be NULL with a zero length, or
/// valid for reads of its length, for `'a`.
pub(crate) unsafe fn convert<'s: 'v, 'v: 'k, 'k: 'e, 'e>(
    s: &otlpflow_span,
    values: &'v mut ValuePool<'s>,
    kvs: &'k mut KvPool<'v>,
    ev_pool: &'e mut EventPool<'k>,
    link_pool: &'e mut LinkPool<'k>,
) -> Result<Span<'e>, otlpflow_result> {
    // SAFETY: forwarded to this function's contract (so are the calls
    // below).
    let span_attrs = unsafe { attrs(s.attributes, s.attributes_len)? };
    if s.events_len > OTLPFLOW_MAX_EVENTS || s.links_len > OTLPFLOW_MAX_LINKS {
        return Err(otlpflow_result::TooManyAttributes);
    }
    // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
    let events = unsafe { slice_of(s.events, s.events_len)? };
    // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
    let links = unsafe { slice_of(s.links, s.links_len)? };
    let mut lists: ArrayVec<
        &[otlpflow_attribute],
        { 1 + OTLPFLOW_MAX_EVENTS + OTLPFLOW_MAX_LINKS },
    > = ArrayVec::new();
    lists.push(span_attrs);
    for e in events {
        // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
        lists.push(unsafe { attrs(e.attributes, e.attributes_len)? });
    }
    for l in links {
        // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
        lists.push(unsafe { attrs(l.attributes, l.attributes_len)? });
    }
    // Pass 1: array elements of every value, in order.
    for list in &lists {
        for a in list.iter() {
            if is_array(&a.value) {
                // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
                for el in unsafe { slice_of(a.value.array, a.value.array_len)? } {
                    values
                        // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
                        .try_push(unsafe { scalar_of(el)? })
                        .map_err(|_| otlpflow_result::TooManyAttributes)?;
                }
            }
        }
    }
    let values: &'v [Value<'s>] = values;
    // Pass 2: key-values, taking array slices from pass 1 in the same order.
    let mut next_value = 0;
    let mut ranges: ArrayVec<(usize, usize), { 1 + OTLPFLOW_MAX_EVENTS + OTLPFLOW_MAX_LINKS }> =
        ArrayVec::new();
    for list in &lists {
        let start = kvs.len();
        for a in list.iter() {
            let value = if is_array(&a.value) {
                let n = a.value.array_len;
                let v = Value::Array(&values[next_value..next_value + n]);
                next_value += n;
                v
            } else {
                // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
                unsafe { scalar_of(&a.value)? }
            };
            // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
            let key = unsafe { str_of(a.key)? };
            kvs.try_push(KeyValue::new(key, value))
                .map_err(|_| otlpflow_result::TooManyAttributes)?;
        }
        ranges.push((start, kvs.len()));
    }
    let kvs: &'k [KeyValue<'v>] = kvs;
    let list_of = |i: usize| &kvs[ranges[i].0..ranges[i].1];
    // Pass 3: events and links.
    for (i, e) in events.iter().enumerate() {
        ev_pool.push(Event {
            time_unix_nano: e.time_unix_nano,
            // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
            name: unsafe { str_of(e.name)? },
            attributes: list_of(1 + i),
            dropped_attributes_count: e.dropped_attributes_count,
        });
    }
    for (i, l) in links.iter().enumerate() {
        link_pool.push(Link {
            trace_id: l.trace_id,
            span_id: l.span_id,
            // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
            trace_state: unsafe { str_of(l.trace_state)? },
            attributes: list_of(1 + events.len() + i),
            dropped_attributes_count: l.dropped_attributes_count,
            flags: l.flags,
        });
    }
    let kind = otlpflow_span_kind::from_u32(s.kind)?.to_rust();
    let code = otlpflow_status_code::from_u32(s.status_code)?.to_rust();
    Ok(Span {
        trace_id: s.trace_id,
        span_id: s.span_id,
        // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
        trace_state: unsafe { str_of(s.trace_state)? },
        parent_span_id: s.parent_span_id,
        flags: s.flags,
        // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
        name: unsafe { str_of(s.name)? },
        kind,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attribute_set: None,
        attributes: list_of(0),
        dropped_attributes_count: s.dropped_attributes_count,
        events: ev_pool,
        dropped_events_count: s.dropped_events_count,
        links: link_pool,
        dropped_links_count: s.dropped_links_count,
        status: Status {
            code,
            // SAFETY: the caller guarantees every pointer in the span is valid for reads of its length for this call (see `convert`).
            message: unsafe { str_of(s.status_message)? },
        },
    })
}
