//! The benchmark span, shared by the demo, `gen`, the benches
//! and the comparison harness so that their figures compare: `GET
//! /api/v1/items/{id}`, kind SERVER, a parent span id, 5 attributes, one
//! `cache.miss` event, status OK; a new trace id every 1000 spans.

use crate::engine::{Pipeline, Scope, SpanTemplate};
use crate::error::RecordError;
use crate::record::{Event, KeyValue, Span, SpanKind, Status, StatusCode, TemplateSpan, Value};

pub use crate::record::ids::splitmix;
pub use mixed::with_mixed_span;

mod mixed;

/// The trace id of span `i` of a producer seeded `seed`: a new one every
/// 1000 spans.
#[inline]
pub fn trace_id(seed: u64, i: u64) -> [u8; 16] {
    let t = i / 1000;
    let a = splitmix(seed ^ t.wrapping_mul(0x1000_0000_01B3));
    let b = splitmix(a ^ 0x5555);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a.to_le_bytes());
    id[8..].copy_from_slice(&(b | 1).to_le_bytes());
    id
}

/// Records benchmark span number `i` (ids derived from `seed` and `i`;
/// `now_ns` is its end time).
#[inline]
pub fn record_benchmark_span(
    pipeline: &Pipeline,
    scope: &Scope,
    seed: u64,
    i: u64,
    now_ns: u64,
) -> Result<(), RecordError> {
    with_benchmark_span(seed, i, now_ns, |span| pipeline.record_span(scope, span))
}

/// The five attributes of benchmark record `i` (an HTTP server's).
#[inline]
fn benchmark_attributes(i: u64) -> [KeyValue<'static>; 5] {
    [
        KeyValue::new("http.request.method", Value::Str("GET")),
        KeyValue::new("url.path", Value::Str("/api/v1/items/42")),
        KeyValue::new("server.address", Value::Str("api.example.internal")),
        KeyValue::new("http.response.status_code", Value::I64(200)),
        item_id(i),
    ]
}

/// The benchmark span's one attribute of its own (a template's dynamic one).
#[inline]
fn item_id(i: u64) -> KeyValue<'static> {
    KeyValue::new("app.item_id", Value::I64(i as i64))
}

/// The attribute of the benchmark span's event.
#[inline]
fn cache_key(i: u64) -> KeyValue<'static> {
    KeyValue::new("cache.key", Value::I64((i % 4096) as i64))
}

/// The benchmark span's event, half a millisecond before its end.
#[inline]
fn cache_miss<'a>(now_ns: u64, attributes: &'a [KeyValue<'a>]) -> Event<'a> {
    Event {
        time_unix_nano: now_ns.saturating_sub(500_000),
        name: "cache.miss",
        attributes,
        dropped_attributes_count: 0,
    }
}

/// The span id of benchmark record `i` of producer `seed` (never zero).
#[inline]
fn span_id(seed: u64, i: u64) -> [u8; 8] {
    (splitmix(seed ^ i.wrapping_mul(31)) | 1).to_le_bytes()
}

/// The parent span id of benchmark record `i` of producer `seed`.
#[inline]
fn parent_span_id(seed: u64, i: u64) -> [u8; 8] {
    (splitmix(seed ^ (i / 1000) ^ 0xABCD) | 1).to_le_bytes()
}

/// The benchmark span's name.
const BENCHMARK_NAME: &str = "GET /api/v1/items/{id}";

/// Builds benchmark span number `i` on the stack and hands it to `f`.
#[inline]
pub fn with_benchmark_span<R>(seed: u64, i: u64, now_ns: u64, f: impl FnOnce(&Span<'_>) -> R) -> R {
    let attrs = benchmark_attributes(i);
    // The template's per-span part with the template's name, kind and
    // attributes added: the same span either way.
    with_templated_benchmark_span(seed, i, now_ns, |t| {
        f(&Span {
            name: BENCHMARK_NAME,
            kind: SpanKind::Server,
            attributes: &attrs,
            ..t.as_span()
        })
    })
}

/// The benchmark span's template: its name, kind and the four attributes
/// that are the same for every span (the item id varies).
pub fn benchmark_template(pipeline: &Pipeline, scope: &Scope) -> SpanTemplate {
    let statics = &benchmark_attributes(0)[..4];
    pipeline.template(scope, BENCHMARK_NAME, SpanKind::Server, statics)
}

/// Records benchmark span number `i` through `template` (from
/// [`benchmark_template`]): the same span as [`record_benchmark_span`].
#[inline]
pub fn record_templated_benchmark_span(
    pipeline: &Pipeline,
    template: &SpanTemplate,
    seed: u64,
    i: u64,
    now_ns: u64,
) -> Result<(), RecordError> {
    with_templated_benchmark_span(seed, i, now_ns, |span| {
        pipeline.record_templated(template, span)
    })
}

/// Builds the per-span part of benchmark span number `i` (see
/// [`benchmark_template`]) on the stack and hands it to `f`: what a host
/// recording through the template builds, the same data as
/// [`with_benchmark_span`] less the template's name, kind and four
/// attributes.
#[inline]
pub fn with_templated_benchmark_span<R>(
    seed: u64,
    i: u64,
    now_ns: u64,
    f: impl FnOnce(&TemplateSpan<'_>) -> R,
) -> R {
    let attrs = [item_id(i)];
    let event_attrs = [cache_key(i)];
    let events = [cache_miss(now_ns, &event_attrs)];
    f(&TemplateSpan {
        trace_id: trace_id(seed, i),
        span_id: span_id(seed, i),
        parent_span_id: parent_span_id(seed, i),
        start_time_unix_nano: now_ns.saturating_sub(1_000_000),
        end_time_unix_nano: now_ns,
        attributes: &attrs,
        events: &events,
        status: Status {
            code: StatusCode::Ok,
            message: "",
        },
        flags: 0x101,
        ..Default::default()
    })
}

/// Records benchmark log record number `i`: a message body, five
/// attributes, trace context, as an HTTP server's access log would carry.
#[inline]
pub fn record_benchmark_log(
    pipeline: &Pipeline,
    scope: &Scope,
    seed: u64,
    i: u64,
    now_ns: u64,
) -> Result<(), RecordError> {
    let attrs = benchmark_attributes(i);
    let log = crate::LogRecord {
        time_unix_nano: now_ns,
        observed_time_unix_nano: now_ns,
        severity_number: crate::Severity::INFO,
        severity_text: "INFO",
        body: Some(Value::Str(
            "request served from cache after a miss on the item key",
        )),
        attributes: &attrs,
        trace_id: trace_id(seed, i),
        span_id: span_id(seed, i),
        flags: 1,
        ..Default::default()
    };
    pipeline.record_log(scope, &log)
}

/// Records benchmark metric point number `i`: a latency histogram point
/// for one of 16 routes (the host aggregated it; points of the same route
/// and metric are grouped in a batch).
#[inline]
pub fn record_benchmark_point(
    pipeline: &Pipeline,
    scope: &Scope,
    i: u64,
    now_ns: u64,
) -> Result<(), RecordError> {
    const BOUNDS: [f64; 7] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];
    let route = ["/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"][(i % 8) as usize];
    let attrs = [
        KeyValue::new("http.route", Value::Str(route)),
        KeyValue::new(
            "http.response.status_code",
            Value::I64(200 + (i % 2) as i64),
        ),
    ];
    let counts = [i % 5, 3, 8, 2, 1, 0, 0, 1];
    let point = crate::MetricPoint {
        name: "http.server.request.duration",
        description: "Duration of HTTP server requests.",
        unit: "ms",
        attribute_set: None,
        attributes: &attrs,
        start_time_unix_nano: now_ns.saturating_sub(10_000_000_000),
        time_unix_nano: now_ns,
        flags: 0,
        data: crate::MetricData::Histogram {
            point: crate::HistogramPoint {
                count: counts.iter().sum(),
                sum: Some(412.5),
                min: Some(1.5),
                max: Some(980.0),
                bounds: &BOUNDS,
                bucket_counts: &counts,
            },
            temporality: crate::Temporality::Delta,
        },
    };
    pipeline.record_metric(scope, &point)
}

pub use crate::clock::now_unix_nano;
