//! Spans handed over in batches as Python `marshal` data: the Python
//! binding's fast path. Python appends one tuple per finished span to a
//! buffer and, every few hundred spans, marshals the list in one C-speed
//! call and passes the bytes here; this side reads them (see `marshal`)
//! and records each span as `otlpflow_pipeline_record_span` would.
//!
//! A span tuple, by position (later positions optional):
//!
//! | # | field | Python value |
//! |---|-------|--------------|
//! | 0 | name | `str`, or an `int`: an `otlpflow_span_template` handle whose name, kind and attributes the span takes (its own attributes follow) |
//! | 1 | kind | `int` 0-5 (`otlpflow_span_kind`; ignored with a template) |
//! | 2 | trace id | `int` (big-endian, as the OpenTelemetry SDK keeps it) or 16 `bytes`; `0`/`None`: a fresh one |
//! | 3 | span id | `int` or 8 `bytes`; `0`/`None`: a fresh one |
//! | 4 | parent span id | `int` or 8 `bytes`; `0`/`None`: a root span |
//! | 5, 6 | start, end | `int` nanoseconds since the Unix epoch |
//! | 7 | attributes | `dict` of `str` to `str`/`bool`/`int`/`float`/`bytes` or a `list`/`tuple` of those, or `None` |
//! | 8 | events | `list` of `(time, name, attributes[, dropped_attributes])`, or `None` |
//! | 9 | status code | `int` 0 unset, 1 ok, 2 error |
//! | 10 | status message | `str` or `None` |
//! | 11 | links | `list` of `(trace_id, span_id, attributes[, trace_state, flags, dropped_attributes])`, or `None` |
//! | 12 | trace state | `str` or `None` |
//! | 13 | flags | `int` (W3C trace flags and OTLP span flags) |
//! | 14, 15, 16 | dropped attributes, events, links | `int` |
//!
//! A `None` attribute value is skipped (the OpenTelemetry SDKs drop it).
//! A span that does not fit this shape is refused and counted as
//! `dropped.invalid`; the others in the batch are still recorded.

use std::ops::Range;

use otlpflow::record::ids::{new_span_id, new_trace_id};
use otlpflow::{
    Event, KeyValue, Link, Pipeline, Scope, Signal, Span, SpanKind, Status, StatusCode,
    TemplateSpan, Value,
};

use crate::marshal::{Obj, Parsed};
use crate::ptr::handle_ref;
use crate::template::otlpflow_span_template;

/// An attribute value before arrays are resolved.
#[derive(Clone)]
enum Src<'a> {
    Scalar(Value<'a>),
    Array(Range<usize>),
}

/// Where a span's or event's or link's parts sit in the batch's arenas.
struct EventPlan<'a> {
    time: u64,
    name: &'a str,
    attrs: Range<usize>,
    dropped: u32,
}

struct LinkPlan<'a> {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    trace_state: &'a str,
    flags: u32,
    attrs: Range<usize>,
    dropped: u32,
}

struct SpanPlan<'a> {
    name: &'a str,
    /// An `otlpflow_span_template` handle, in place of name and kind.
    template: Option<u64>,
    kind: SpanKind,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: [u8; 8],
    start: u64,
    end: u64,
    attrs: Range<usize>,
    status: Status<'a>,
    trace_state: &'a str,
    flags: u32,
    dropped: [u32; 3],
}

/// A span's arenas: everything its slices point into (reused from span
/// to span).
#[derive(Default)]
struct Arenas<'a> {
    values: Vec<Value<'a>>,
    attrs: Vec<(&'a str, Src<'a>)>,
    events: Vec<EventPlan<'a>>,
    links: Vec<LinkPlan<'a>>,
}

/// How many of a batch were recorded and refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: usize,
    pub refused: usize,
}

/// Records every span tuple of the marshalled list `top`, one at a time:
/// the arenas are reused from span to span.
pub fn record(p: &Pipeline, scope: &Scope, parsed: &Parsed<'_>, top: Obj) -> Outcome {
    let mut a = Arenas::default();
    let mut out = Outcome::default();
    // Each span's lists, their allocations kept from span to span (see
    // `recycle`): a malloc and a free per list and span cost more than
    // reading the span's marshal bytes.
    let mut kv_store: Vec<KeyValue<'static>> = Vec::new();
    let mut event_store: Vec<Event<'static>> = Vec::new();
    let mut link_store: Vec<Link<'static>> = Vec::new();
    for &t in parsed.seq(top) {
        a.values.clear();
        a.attrs.clear();
        a.events.clear();
        a.links.clear();
        let Ok(s) = plan_span(parsed, parsed.seq(t), &mut a) else {
            let _ = p.refuse_invalid(Signal::Traces);
            out.refused += 1;
            continue;
        };
        let mut kvs: Vec<KeyValue<'_>> = recycle(std::mem::take(&mut kv_store));
        kvs.extend(a.attrs.iter().map(|(key, src)| KeyValue {
            key,
            value: match src {
                Src::Scalar(v) => *v,
                Src::Array(r) => Value::Array(&a.values[r.clone()]),
            },
        }));
        let mut events: Vec<Event<'_>> = recycle(std::mem::take(&mut event_store));
        events.extend(a.events.iter().map(|e| Event {
            time_unix_nano: e.time,
            name: e.name,
            attributes: &kvs[e.attrs.clone()],
            dropped_attributes_count: e.dropped,
        }));
        let mut links: Vec<Link<'_>> = recycle(std::mem::take(&mut link_store));
        links.extend(a.links.iter().map(|l| Link {
            trace_id: l.trace_id,
            span_id: l.span_id,
            trace_state: l.trace_state,
            attributes: &kvs[l.attrs.clone()],
            dropped_attributes_count: l.dropped,
            flags: l.flags,
        }));
        let span = Span {
            trace_id: s.trace_id,
            span_id: s.span_id,
            trace_state: s.trace_state,
            parent_span_id: s.parent,
            flags: s.flags,
            name: s.name,
            kind: s.kind,
            start_time_unix_nano: s.start,
            end_time_unix_nano: s.end,
            attribute_set: None,
            attributes: &kvs[s.attrs],
            dropped_attributes_count: s.dropped[0],
            events: &events,
            dropped_events_count: s.dropped[1],
            links: &links,
            dropped_links_count: s.dropped[2],
            status: s.status,
        };
        let recorded = match s.template {
            None => p.record_span(scope, &span),
            Some(h) => {
                // SAFETY: `handle_ref` checks the number is a live template
                // handle (anything else is refused); the Python binding
                // frees its templates only after the pipeline, once no
                // hand-over can run, and a C caller must not free one
                // during this call.
                match unsafe { handle_ref::<otlpflow_span_template>(h as usize as *const _) } {
                    Ok(t) => p.record_templated(&t.template, &TemplateSpan::from(&span)),
                    Err(_) => Err(p.refuse_invalid(Signal::Traces)),
                }
            }
        };
        match recorded {
            Ok(()) => out.accepted += 1,
            Err(_) => out.refused += 1,
        }
        event_store = recycle(events);
        link_store = recycle(links);
        kv_store = recycle(kvs);
    }
    out
}

/// `v` emptied, as a list of another lifetime of the same type: the
/// allocation is reused (a `Vec` collected from its own emptied iterator
/// keeps the buffer when the two element types have one layout, as the
/// same type of two lifetimes has), and no element ever crosses over.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("emptied above"))
        .collect()
}

/// An id of `N` bytes: an `int` (big-endian) or `N` bytes; zero or `None`
/// gives `None`.
fn id<const N: usize>(p: &Parsed<'_>, o: Obj) -> Result<Option<[u8; N]>, ()> {
    let mut out = [0u8; N];
    match o {
        Obj::None => return Ok(None),
        Obj::Int(_) | Obj::Big { .. } => {
            let magnitude = p.u128(o).ok_or(())?;
            if N < 16 && magnitude >> (8 * N) != 0 {
                return Err(());
            }
            out.copy_from_slice(&magnitude.to_be_bytes()[16 - N..]);
        }
        Obj::Bytes { .. } => {
            let b = p.bytes(o).ok_or(())?;
            if b.len() != N {
                return Err(());
            }
            out.copy_from_slice(b);
        }
        _ => return Err(()),
    }
    Ok((out != [0; N]).then_some(out))
}

fn text<'a>(p: &Parsed<'a>, o: Obj) -> Result<&'a str, ()> {
    match o {
        Obj::None => Ok(""),
        _ => p.str(o).ok_or(()),
    }
}

fn count(o: Option<&Obj>) -> Result<u32, ()> {
    match o {
        None | Some(Obj::None) => Ok(0),
        Some(o) => o.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or(()),
    }
}

fn scalar<'a>(p: &Parsed<'a>, o: Obj) -> Result<Option<Value<'a>>, ()> {
    Ok(Some(match o {
        Obj::None => return Ok(None),
        Obj::Bool(b) => Value::Bool(b),
        Obj::Int(v) => Value::I64(v),
        Obj::Float(f) => Value::F64(f),
        Obj::Str { .. } => Value::Str(p.str(o).ok_or(())?),
        Obj::BadStr => return Err(()),
        Obj::Bytes { .. } => Value::Bytes(p.bytes(o).ok_or(())?),
        Obj::Big { .. } | Obj::Seq { .. } | Obj::Dict { .. } | Obj::Other => return Err(()),
    }))
}

/// Appends a dict's attributes to the arenas; their range.
fn plan_attrs<'a>(p: &Parsed<'a>, o: Obj, a: &mut Arenas<'a>) -> Result<Range<usize>, ()> {
    let start = a.attrs.len();
    match o {
        Obj::None => {}
        Obj::Dict { .. } => {
            for (k, v) in p.dict(o) {
                let key = p.str(k).ok_or(())?;
                let src = match v {
                    Obj::Seq { .. } => {
                        let from = a.values.len();
                        for &item in p.seq(v) {
                            if let Some(x) = scalar(p, item)? {
                                a.values.push(x);
                            }
                        }
                        Src::Array(from..a.values.len())
                    }
                    _ => match scalar(p, v)? {
                        Some(x) => Src::Scalar(x),
                        None => continue,
                    },
                };
                a.attrs.push((key, src));
            }
        }
        _ => return Err(()),
    }
    Ok(start..a.attrs.len())
}

fn plan_span<'a>(p: &Parsed<'a>, f: &[Obj], a: &mut Arenas<'a>) -> Result<SpanPlan<'a>, ()> {
    if f.len() < 12 {
        return Err(());
    }
    let kind = match f[1].as_i64().ok_or(())? {
        0 => SpanKind::Unspecified,
        1 => SpanKind::Internal,
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => return Err(()),
    };
    let code = match f[9].as_i64().ok_or(())? {
        0 => StatusCode::Unset,
        1 => StatusCode::Ok,
        2 => StatusCode::Error,
        _ => return Err(()),
    };
    let attrs = plan_attrs(p, f[7], a)?;
    if !matches!(f[8], Obj::None) {
        for &e in p.seq(f[8]) {
            let e = p.seq(e);
            if e.len() < 3 {
                return Err(());
            }
            let ev = EventPlan {
                time: e[0].as_u64().ok_or(())?,
                name: text(p, e[1])?,
                attrs: plan_attrs(p, e[2], a)?,
                dropped: count(e.get(3))?,
            };
            a.events.push(ev);
        }
    }
    if !matches!(f[11], Obj::None) {
        for &l in p.seq(f[11]) {
            let l = p.seq(l);
            if l.len() < 3 {
                return Err(());
            }
            let link = LinkPlan {
                trace_id: id::<16>(p, l[0])?.ok_or(())?,
                span_id: id::<8>(p, l[1])?.ok_or(())?,
                attrs: plan_attrs(p, l[2], a)?,
                trace_state: l.get(3).map_or(Ok(""), |&o| text(p, o))?,
                flags: count(l.get(4))?,
                dropped: count(l.get(5))?,
            };
            a.links.push(link);
        }
    }
    let (name, template) = match f[0] {
        Obj::Int(_) | Obj::Big { .. } => {
            let h = p.u128(f[0]).and_then(|h| u64::try_from(h).ok()).ok_or(())?;
            ("", Some(h))
        }
        o => (text(p, o)?, None),
    };
    Ok(SpanPlan {
        name,
        template,
        kind,
        trace_id: id::<16>(p, f[2])?.unwrap_or_else(new_trace_id),
        span_id: id::<8>(p, f[3])?.unwrap_or_else(new_span_id),
        parent: id::<8>(p, f[4])?.unwrap_or([0; 8]),
        start: f[5].as_u64().ok_or(())?,
        end: f[6].as_u64().ok_or(())?,
        attrs,
        status: Status {
            code,
            message: text(p, f[10])?,
        },
        trace_state: f.get(12).map_or(Ok(""), |&o| text(p, o))?,
        flags: count(f.get(13))?,
        dropped: [count(f.get(14))?, count(f.get(15))?, count(f.get(16))?],
    })
}

/// Records a batch of spans marshalled by Python: `buf` holds
/// `marshal.dumps(list_of_span_tuples, 4)` (the tuple layout is in the
/// README, "Python"). Meant for the Python binding, which batches spans
/// this way because one `marshal` call is far cheaper than building C
/// structs field by field. Writes how many spans were accepted and refused;
/// a tuple of the wrong shape is refused and counted as `dropped.invalid`
/// without stopping the others. A buffer that is not a marshalled list
/// returns `OTLPFLOW_RESULT_INVALID_ARGUMENT` and records nothing.
#[no_mangle]
#[must_use]
pub extern "C" fn otlpflow_pipeline_record_marshalled_spans(
    pipeline: *const crate::pipeline::otlpflow_pipeline,
    scope: *const crate::pipeline::otlpflow_scope,
    buf: *const u8,
    len: usize,
    out_accepted: *mut usize,
    out_refused: *mut usize,
) -> crate::otlpflow_result {
    use crate::ptr::{ref_of, slice_of, write_out};
    use crate::R;
    crate::ffi_boundary!(R::Panic, {
        // SAFETY: pointers per the contract: a live pipeline, a scope, and
        // `len` readable bytes at `buf`, none changed during the call.
        let args = unsafe { (handle_ref(pipeline), ref_of(scope), slice_of(buf, len)) };
        let (p, sc, bytes) = match args {
            (Ok(p), Ok(sc), Ok(b)) => (p, sc, b),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        if out_accepted.is_null() || out_refused.is_null() {
            return R::NullArgument;
        }
        let (top, parsed) = match crate::marshal::parse(bytes) {
            Ok((top @ Obj::Seq { .. }, parsed)) => (top, parsed),
            _ => return R::InvalidArgument,
        };
        let scope = Scope::from_parts(sc.id, sc.pipeline);
        let out = record(&p.pipeline, &scope, &parsed, top);
        // SAFETY: both checked non-NULL; writable per the contract.
        unsafe {
            let _ = write_out(out_accepted, out.accepted);
            let _ = write_out(out_refused, out.refused);
        }
        R::Ok
    })
}
