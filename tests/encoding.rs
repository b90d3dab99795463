//! Property tests: random spans, log records and metric points encoded by
//! otlpflow's hot-path encoders and framed by its batcher into export
//! requests decode with the `opentelemetry-proto` prost types to exactly
//! the values recorded.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::trace::v1 as pt;
use otlpflow::__private::Batch;
use otlpflow::{Event, KeyValue, Link, OwnedValue, Span, SpanKind, Status, StatusCode, Value};
use proptest::prelude::*;
use prost::Message;

/// An owned attribute tree; the test leaks it into `'static` borrowed values.
#[derive(Debug, Clone)]
enum V {
    S(String),
    B(bool),
    I(i64),
    F(f64),
    By(Vec<u8>),
    Arr(Vec<V>),
    Kv(Vec<(String, V)>),
}

fn value_strategy() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        ".{0,12}".prop_map(V::S),
        any::<bool>().prop_map(V::B),
        any::<i64>().prop_map(V::I),
        (-1e300f64..1e300).prop_map(V::F),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(V::By),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(V::Arr),
            prop::collection::vec((".{0,6}", inner), 0..4).prop_map(V::Kv),
        ]
    })
}

fn attrs_strategy() -> impl Strategy<Value = Vec<(String, V)>> {
    prop::collection::vec((".{0,10}", value_strategy()), 0..6)
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn to_value(v: &V) -> Value<'static> {
    match v {
        V::S(s) => Value::Str(leak_str(s)),
        V::B(b) => Value::Bool(*b),
        V::I(i) => Value::I64(*i),
        V::F(f) => Value::F64(*f),
        V::By(b) => Value::Bytes(leak(b.clone())),
        V::Arr(vs) => Value::Array(leak(vs.iter().map(to_value).collect())),
        V::Kv(kvs) => Value::KvList(to_attrs(kvs)),
    }
}

fn to_attrs(kvs: &[(String, V)]) -> &'static [KeyValue<'static>] {
    leak(
        kvs.iter()
            .map(|(k, v)| KeyValue::new(leak_str(k), to_value(v)))
            .collect(),
    )
}

fn expect_value(v: &V) -> pc::AnyValue {
    use pc::any_value::Value as P;
    pc::AnyValue {
        value: Some(match v {
            V::S(s) => P::StringValue(s.clone()),
            V::B(b) => P::BoolValue(*b),
            V::I(i) => P::IntValue(*i),
            V::F(f) => P::DoubleValue(*f),
            V::By(b) => P::BytesValue(b.clone()),
            V::Arr(vs) => P::ArrayValue(pc::ArrayValue {
                values: vs.iter().map(expect_value).collect(),
            }),
            V::Kv(kvs) => P::KvlistValue(pc::KeyValueList {
                values: expect_attrs(kvs),
            }),
        }),
    }
}

fn expect_attrs(kvs: &[(String, V)]) -> Vec<pc::KeyValue> {
    kvs.iter()
        .map(|(k, v)| pc::KeyValue {
            key: k.clone(),
            value: Some(expect_value(v)),
            ..Default::default()
        })
        .collect()
}

fn id_or_empty(id: &[u8]) -> Vec<u8> {
    if id.iter().all(|b| *b == 0) {
        Vec::new()
    } else {
        id.to_vec()
    }
}

type Attrs = Vec<(String, V)>;
/// time, name, attributes, dropped attributes.
type OwnedEvent = (u64, String, Attrs, u32);
/// trace id, span id, trace state, attributes, dropped attributes, flags.
type OwnedLink = ([u8; 16], [u8; 8], String, Attrs, u32, u32);

#[derive(Debug, Clone)]
struct OwnedSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: [u8; 8],
    trace_state: String,
    flags: u32,
    name: String,
    kind: u8,
    start: u64,
    end: u64,
    attrs: Vec<(String, V)>,
    dropped: (u32, u32, u32),
    events: Vec<OwnedEvent>,
    links: Vec<OwnedLink>,
    status: (u8, String),
}

fn span_strategy() -> impl Strategy<Value = OwnedSpan> {
    (
        (
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            any::<[u8; 8]>(),
            ".{0,8}",
            any::<u32>(),
        ),
        (".{0,20}", 0u8..6, any::<u64>(), any::<u64>()),
        attrs_strategy(),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        prop::collection::vec(
            (any::<u64>(), ".{0,8}", attrs_strategy(), any::<u32>()),
            0..3,
        ),
        prop::collection::vec(
            (
                any::<[u8; 16]>(),
                any::<[u8; 8]>(),
                ".{0,8}",
                attrs_strategy(),
                any::<u32>(),
                any::<u32>(),
            ),
            0..3,
        ),
        (0u8..3, ".{0,10}"),
    )
        .prop_map(
            |(ids, times, attrs, dropped, events, links, status)| OwnedSpan {
                trace_id: ids.0,
                span_id: ids.1,
                parent: ids.2,
                trace_state: ids.3,
                flags: ids.4,
                name: times.0,
                kind: times.1,
                start: times.2,
                end: times.3,
                attrs,
                dropped,
                events,
                links,
                status,
            },
        )
}

const KINDS: [SpanKind; 6] = [
    SpanKind::Unspecified,
    SpanKind::Internal,
    SpanKind::Server,
    SpanKind::Client,
    SpanKind::Producer,
    SpanKind::Consumer,
];
const CODES: [StatusCode; 3] = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error];

fn to_span(o: &OwnedSpan) -> Span<'static> {
    Span {
        trace_id: o.trace_id,
        span_id: o.span_id,
        trace_state: leak_str(&o.trace_state),
        parent_span_id: o.parent,
        flags: o.flags,
        name: leak_str(&o.name),
        kind: KINDS[o.kind as usize],
        start_time_unix_nano: o.start,
        end_time_unix_nano: o.end,
        attribute_set: None,
        attributes: to_attrs(&o.attrs),
        dropped_attributes_count: o.dropped.0,
        events: leak(
            o.events
                .iter()
                .map(|(t, n, a, d)| Event {
                    time_unix_nano: *t,
                    name: leak_str(n),
                    attributes: to_attrs(a),
                    dropped_attributes_count: *d,
                })
                .collect(),
        ),
        dropped_events_count: o.dropped.1,
        links: leak(
            o.links
                .iter()
                .map(|(t, s, ts, a, d, f)| Link {
                    trace_id: *t,
                    span_id: *s,
                    trace_state: leak_str(ts),
                    attributes: to_attrs(a),
                    dropped_attributes_count: *d,
                    flags: *f,
                })
                .collect(),
        ),
        dropped_links_count: o.dropped.2,
        status: Status {
            code: CODES[o.status.0 as usize],
            message: leak_str(&o.status.1),
        },
    }
}

fn expect_span(o: &OwnedSpan) -> pt::Span {
    let status = if o.status.0 == 0 && o.status.1.is_empty() {
        None
    } else {
        Some(pt::Status {
            message: o.status.1.clone(),
            code: o.status.0 as i32,
        })
    };
    pt::Span {
        trace_id: id_or_empty(&o.trace_id),
        span_id: id_or_empty(&o.span_id),
        trace_state: o.trace_state.clone(),
        parent_span_id: id_or_empty(&o.parent),
        flags: o.flags,
        name: o.name.clone(),
        kind: o.kind as i32,
        start_time_unix_nano: o.start,
        end_time_unix_nano: o.end,
        attributes: expect_attrs(&o.attrs),
        dropped_attributes_count: o.dropped.0,
        events: o
            .events
            .iter()
            .map(|(t, n, a, d)| pt::span::Event {
                time_unix_nano: *t,
                name: n.clone(),
                attributes: expect_attrs(a),
                dropped_attributes_count: *d,
            })
            .collect(),
        dropped_events_count: o.dropped.1,
        links: o
            .links
            .iter()
            .map(|(t, s, ts, a, d, f)| pt::span::Link {
                trace_id: id_or_empty(t),
                span_id: id_or_empty(s),
                trace_state: ts.clone(),
                attributes: expect_attrs(a),
                dropped_attributes_count: *d,
                flags: *f,
            })
            .collect(),
        dropped_links_count: o.dropped.2,
        status,
    }
}

/// Frames spans (by scope index) with the engine's batcher and decodes.
fn frame_and_decode(
    spans: &[(u32, Vec<u8>)],
    scopes: &[Bytes],
    resource: &[u8],
) -> ExportTraceServiceRequest {
    let mut batch = Batch::new();
    for (tag, rec) in spans {
        batch.push(*tag, rec, |t| scopes[t as usize].clone());
    }
    let req = batch.take(resource);
    let mut msg = Vec::new();
    for s in req.slices() {
        msg.extend_from_slice(s);
    }
    assert_eq!(msg.len(), req.message_len);
    ExportTraceServiceRequest::decode(&msg[..]).expect("prost decodes the framed request")
}

fn encode(span: &Span<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; span.encoded_len()];
    span.encode(&mut buf);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_spans_decode_to_the_same_values(spans in prop::collection::vec(span_strategy(), 1..6)) {
        let encoded: Vec<(u32, Vec<u8>)> = spans.iter().map(|s| (0, encode(&to_span(s)))).collect();
        let scope = Bytes::from(otlpflow_scope("lib", "1.0"));
        let resource = otlpflow_resource();
        let req = frame_and_decode(&encoded, &[scope], &resource);
        prop_assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        prop_assert_eq!(rs.scope_spans.len(), 1);
        let got = &rs.scope_spans[0].spans;
        let want: Vec<pt::Span> = spans.iter().map(expect_span).collect();
        prop_assert_eq!(got, &want);
    }

    #[test]
    fn prost_and_otlpflow_agree_byte_for_byte(s in span_strategy()) {
        // Fields are written in field-number order with proto3 defaults
        // omitted, exactly as prost writes them.
        let ours = encode(&to_span(&s));
        let theirs = expect_span(&s).encode_to_vec();
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn templates_and_attribute_sets_agree_with_prost(s in span_strategy(), cut in 0usize..8) {
        // The first `cut` attributes static (in the template, or in a set),
        // the rest the span's own: the same bytes as prost's whole span.
        let span = to_span(&s);
        let cut = cut.min(span.attributes.len());
        let (fixed, own) = span.attributes.split_at(cut);
        let theirs = expect_span(&s).encode_to_vec();
        let shape = otlpflow::SpanShape::new(span.name, span.kind, fixed);
        let t = otlpflow::TemplateSpan {
            trace_id: span.trace_id,
            span_id: span.span_id,
            trace_state: span.trace_state,
            parent_span_id: span.parent_span_id,
            flags: span.flags,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
            attributes: own,
            dropped_attributes_count: span.dropped_attributes_count,
            events: span.events,
            dropped_events_count: span.dropped_events_count,
            links: span.links,
            dropped_links_count: span.dropped_links_count,
            status: span.status,
        };
        let mut ours = vec![0u8; shape.encoded_len(&t)];
        shape.encode(&t, &mut ours);
        prop_assert_eq!(&ours, &theirs);
        let set = otlpflow::AttributeSet::new(fixed);
        prop_assert_eq!(set.len(), cut);
        let with_set = Span { attribute_set: Some(&set), attributes: own, ..span };
        prop_assert_eq!(encode(&with_set), theirs);
    }
}

/// The engine frames the scope and resource; build them the same way the
/// pipeline does, through its public setup path.
fn otlpflow_scope(name: &str, version: &str) -> Vec<u8> {
    // scope field of ScopeSpans: key 1, length, InstrumentationScope.
    let mut body = Vec::new();
    body.extend_from_slice(&[0x0a, name.len() as u8]);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&[0x12, version.len() as u8]);
    body.extend_from_slice(version.as_bytes());
    let mut out = vec![0x0a, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

fn otlpflow_resource() -> Vec<u8> {
    let r = opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: vec![pc::KeyValue {
            key: "service.name".into(),
            value: Some(pc::AnyValue {
                value: Some(pc::any_value::Value::StringValue("svc".into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = r.encode_to_vec();
    let mut out = vec![0x0a, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

#[test]
fn scopes_are_grouped_and_the_resource_is_kept() {
    let a = Bytes::from(otlpflow_scope("a", "1"));
    let b = Bytes::from(otlpflow_scope("b", "2"));
    let span = |n: u8| {
        encode(&Span {
            trace_id: [n; 16],
            span_id: [n; 8],
            name: "s",
            ..Default::default()
        })
    };
    let recs = vec![
        (0, span(1)),
        (1, span(2)),
        (0, span(3)),
        (1, span(4)),
        (0, span(5)),
    ];
    let req = frame_and_decode(&recs, &[a, b], &otlpflow_resource());
    let rs = &req.resource_spans[0];
    let attrs = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(attrs[0].key, "service.name");
    let names: Vec<(&str, usize)> = rs
        .scope_spans
        .iter()
        .map(|ss| (ss.scope.as_ref().unwrap().name.as_str(), ss.spans.len()))
        .collect();
    assert_eq!(names, vec![("a", 3), ("b", 2)]);
    assert_eq!(rs.scope_spans[0].spans[1].trace_id, vec![3; 16]);
}

#[test]
fn owned_values_encode_like_prost() {
    // Resource attributes go through the owned-value encoder.
    let pipeline_resource = vec![
        ("s".to_owned(), OwnedValue::from("x")),
        ("i".to_owned(), OwnedValue::I64(-5)),
        (
            "arr".to_owned(),
            OwnedValue::Array(vec![OwnedValue::Bool(true), OwnedValue::F64(1.5)]),
        ),
    ];
    let mut ours = Vec::new();
    otlpflow::record::value::encode_owned_attributes(&mut ours, 1, &pipeline_resource);
    let theirs = opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: expect_attrs(&[
            ("s".into(), V::S("x".into())),
            ("i".into(), V::I(-5)),
            ("arr".into(), V::Arr(vec![V::B(true), V::F(1.5)])),
        ]),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(ours, theirs);
}

// ---------------------------------------------------------------- log records

#[derive(Debug, Clone)]
struct OwnedLog {
    time: u64,
    observed: u64,
    severity: u8,
    text: String,
    body: Option<V>,
    attrs: Attrs,
    dropped: u32,
    flags: u32,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    event_name: String,
}

fn log_strategy() -> impl Strategy<Value = OwnedLog> {
    (
        (any::<u64>(), any::<u64>(), 0u8..=24, ".{0,8}"),
        (
            prop::option::of(value_strategy()),
            attrs_strategy(),
            any::<u32>(),
            any::<u32>(),
        ),
        (any::<[u8; 16]>(), any::<[u8; 8]>(), ".{0,8}"),
    )
        .prop_map(
            |(
                (time, observed, severity, text),
                (body, attrs, dropped, flags),
                (trace_id, span_id, event_name),
            )| {
                OwnedLog {
                    time,
                    observed,
                    severity,
                    text,
                    body,
                    attrs,
                    dropped,
                    flags,
                    trace_id,
                    span_id,
                    event_name,
                }
            },
        )
}

fn expect_log(o: &OwnedLog) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    opentelemetry_proto::tonic::logs::v1::LogRecord {
        time_unix_nano: o.time,
        observed_time_unix_nano: o.observed,
        severity_number: o.severity as i32,
        severity_text: o.text.clone(),
        body: o.body.as_ref().map(expect_value),
        attributes: expect_attrs(&o.attrs),
        dropped_attributes_count: o.dropped,
        flags: o.flags,
        trace_id: id_or_empty(&o.trace_id),
        span_id: id_or_empty(&o.span_id),
        event_name: o.event_name.clone(),
    }
}

// ---------------------------------------------------------------- metric points

#[derive(Debug, Clone)]
enum OwnedData {
    Gauge(Num),
    Sum(Num, bool, bool),
    /// bounds, counts, sum, min, max, delta
    Hist(
        Vec<f64>,
        Vec<u64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        bool,
    ),
    Exp(OwnedExp),
}

#[derive(Debug, Clone)]
struct OwnedExp {
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    positive: (i32, Vec<u64>),
    negative: (i32, Vec<u64>),
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    delta: bool,
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

#[derive(Debug, Clone)]
struct OwnedPoint {
    name: String,
    description: String,
    unit: String,
    attrs: Attrs,
    start: u64,
    time: u64,
    flags: u32,
    data: OwnedData,
}

fn num_strategy() -> impl Strategy<Value = Num> {
    prop_oneof![
        any::<i64>().prop_map(Num::I),
        (-1e300f64..1e300).prop_map(Num::F)
    ]
}

fn data_strategy() -> impl Strategy<Value = OwnedData> {
    let opt = || prop::option::of(-1e12f64..1e12);
    prop_oneof![
        num_strategy().prop_map(OwnedData::Gauge),
        (num_strategy(), any::<bool>(), any::<bool>())
            .prop_map(|(n, m, d)| OwnedData::Sum(n, m, d)),
        (
            prop::collection::btree_set(-1_000_000i64..1_000_000, 0..6),
            opt(),
            opt(),
            opt(),
            any::<bool>()
        )
            .prop_flat_map(|(bounds, sum, min, max, delta)| {
                let bounds: Vec<f64> = bounds.into_iter().map(|b| b as f64 / 8.0).collect();
                let n = bounds.len() + 1;
                prop::collection::vec(0u64..1_000_000, n..=n).prop_map(move |counts| {
                    OwnedData::Hist(bounds.clone(), counts, sum, min, max, delta)
                })
            }),
        (
            (-10i32..=20, 0u64..1000, prop_oneof![Just(0.0), 0.0f64..1.0]),
            (any::<i32>(), prop::collection::vec(0u64..1_000_000, 0..8)),
            (any::<i32>(), prop::collection::vec(0u64..1_000_000, 0..8)),
            (opt(), opt(), opt(), any::<bool>()),
        )
            .prop_map(
                |(
                    (scale, zero_count, zero_threshold),
                    positive,
                    negative,
                    (sum, min, max, delta),
                )| {
                    OwnedData::Exp(OwnedExp {
                        scale,
                        zero_count,
                        zero_threshold,
                        positive,
                        negative,
                        sum,
                        min,
                        max,
                        delta,
                    })
                }
            ),
    ]
}

fn point_strategy() -> impl Strategy<Value = OwnedPoint> {
    (
        ("[a-z.]{1,10}", ".{0,8}", ".{0,4}"),
        (attrs_strategy(), any::<u64>(), any::<u64>(), 0u32..2),
        data_strategy(),
    )
        .prop_map(
            |((name, description, unit), (attrs, start, time, flags), data)| OwnedPoint {
                name,
                description,
                unit,
                attrs,
                start,
                time,
                flags,
                data,
            },
        )
}

fn exp_count(e: &OwnedExp) -> u64 {
    e.zero_count + e.positive.1.iter().sum::<u64>() + e.negative.1.iter().sum::<u64>()
}

fn to_point(o: &OwnedPoint) -> otlpflow::MetricPoint<'static> {
    use otlpflow::{HistogramPoint, MetricData, Number, Temporality};
    let num = |n: Num| match n {
        Num::I(i) => Number::I64(i),
        Num::F(f) => Number::F64(f),
    };
    let t = |delta: bool| {
        if delta {
            Temporality::Delta
        } else {
            Temporality::Cumulative
        }
    };
    otlpflow::MetricPoint {
        name: leak_str(&o.name),
        description: leak_str(&o.description),
        unit: leak_str(&o.unit),
        attribute_set: None,
        attributes: to_attrs(&o.attrs),
        start_time_unix_nano: o.start,
        time_unix_nano: o.time,
        flags: o.flags,
        data: match &o.data {
            OwnedData::Gauge(n) => MetricData::Gauge(num(*n)),
            OwnedData::Sum(n, m, d) => MetricData::Sum {
                value: num(*n),
                monotonic: *m,
                temporality: t(*d),
            },
            OwnedData::Exp(e) => MetricData::ExponentialHistogram {
                point: otlpflow::ExpHistogramPoint {
                    count: exp_count(e),
                    sum: e.sum,
                    min: e.min,
                    max: e.max,
                    scale: e.scale,
                    zero_count: e.zero_count,
                    zero_threshold: e.zero_threshold,
                    positive: otlpflow::ExpBuckets {
                        offset: e.positive.0,
                        counts: leak(e.positive.1.clone()),
                    },
                    negative: otlpflow::ExpBuckets {
                        offset: e.negative.0,
                        counts: leak(e.negative.1.clone()),
                    },
                },
                temporality: t(e.delta),
            },
            OwnedData::Hist(bounds, counts, sum, min, max, d) => MetricData::Histogram {
                point: HistogramPoint {
                    count: counts.iter().sum(),
                    sum: *sum,
                    min: *min,
                    max: *max,
                    bounds: leak(bounds.clone()),
                    bucket_counts: leak(counts.clone()),
                },
                temporality: t(*d),
            },
        },
    }
}

fn expect_metric(o: &OwnedPoint) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    use opentelemetry_proto::tonic::metrics::v1 as pm;
    let number = |n: Num| match n {
        Num::I(i) => pm::number_data_point::Value::AsInt(i),
        Num::F(f) => pm::number_data_point::Value::AsDouble(f),
    };
    let ndp = |n: Num| pm::NumberDataPoint {
        attributes: expect_attrs(&o.attrs),
        start_time_unix_nano: o.start,
        time_unix_nano: o.time,
        exemplars: vec![],
        flags: o.flags,
        value: Some(number(n)),
    };
    let t = |delta: bool| if delta { 1 } else { 2 };
    pm::Metric {
        name: o.name.clone(),
        description: o.description.clone(),
        unit: o.unit.clone(),
        metadata: vec![],
        data: Some(match &o.data {
            OwnedData::Gauge(n) => pm::metric::Data::Gauge(pm::Gauge {
                data_points: vec![ndp(*n)],
            }),
            OwnedData::Sum(n, m, d) => pm::metric::Data::Sum(pm::Sum {
                data_points: vec![ndp(*n)],
                aggregation_temporality: t(*d),
                is_monotonic: *m,
            }),
            OwnedData::Exp(e) => {
                // An empty side is left off the wire (prost leaves a default
                // message off too): it decodes as absent.
                let buckets = |(offset, counts): &(i32, Vec<u64>)| {
                    (*offset != 0 || !counts.is_empty()).then(|| {
                        pm::exponential_histogram_data_point::Buckets {
                            offset: *offset,
                            bucket_counts: counts.clone(),
                        }
                    })
                };
                pm::metric::Data::ExponentialHistogram(pm::ExponentialHistogram {
                    data_points: vec![pm::ExponentialHistogramDataPoint {
                        attributes: expect_attrs(&o.attrs),
                        start_time_unix_nano: o.start,
                        time_unix_nano: o.time,
                        count: exp_count(e),
                        sum: e.sum,
                        scale: e.scale,
                        zero_count: e.zero_count,
                        positive: buckets(&e.positive),
                        negative: buckets(&e.negative),
                        flags: o.flags,
                        exemplars: vec![],
                        min: e.min,
                        max: e.max,
                        zero_threshold: e.zero_threshold,
                    }],
                    aggregation_temporality: t(e.delta),
                })
            }
            OwnedData::Hist(bounds, counts, sum, min, max, d) => {
                pm::metric::Data::Histogram(pm::Histogram {
                    data_points: vec![pm::HistogramDataPoint {
                        attributes: expect_attrs(&o.attrs),
                        start_time_unix_nano: o.start,
                        time_unix_nano: o.time,
                        count: counts.iter().sum(),
                        sum: *sum,
                        bucket_counts: counts.clone(),
                        explicit_bounds: bounds.clone(),
                        exemplars: vec![],
                        flags: o.flags,
                        min: *min,
                        max: *max,
                    }],
                    aggregation_temporality: t(*d),
                })
            }
        }),
    }
}

fn frame_metrics(
    points: &[otlpflow::MetricPoint<'_>],
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    let scope = Bytes::from(otlpflow_scope("lib", "1.0"));
    let mut batch = Batch::for_metrics();
    for p in points {
        let mut rec = vec![0u8; p.encoded_len()];
        p.encode(&mut rec);
        batch.push(0, &rec, |_| scope.clone());
    }
    let req = batch.take(&otlpflow_resource());
    let mut msg = Vec::new();
    for s in req.slices() {
        msg.extend_from_slice(s);
    }
    assert_eq!(msg.len(), req.message_len);
    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
        &msg[..],
    )
    .expect("prost decodes the framed request")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_log_records_decode_to_the_same_values(o in log_strategy()) {
        let body = o.body.as_ref().map(to_value);
        let log = otlpflow::LogRecord {
            time_unix_nano: o.time,
            observed_time_unix_nano: o.observed,
            severity_number: otlpflow::Severity(o.severity),
            severity_text: leak_str(&o.text),
            body,
            attribute_set: None,
            attributes: to_attrs(&o.attrs),
            dropped_attributes_count: o.dropped,
            flags: o.flags,
            trace_id: o.trace_id,
            span_id: o.span_id,
            event_name: leak_str(&o.event_name),
        };
        let mut buf = vec![0u8; log.encoded_len()];
        log.encode(&mut buf);
        let got = opentelemetry_proto::tonic::logs::v1::LogRecord::decode(&buf[..]).expect("decodes");
        prop_assert_eq!(got, expect_log(&o));
        // Half the attributes in a set: the same bytes.
        let (fixed, own) = log.attributes.split_at(log.attributes.len() / 2);
        let set = otlpflow::AttributeSet::new(fixed);
        let split = otlpflow::LogRecord { attribute_set: Some(&set), attributes: own, ..log };
        let mut again = vec![0u8; split.encoded_len()];
        split.encode(&mut again);
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn random_metric_points_decode_to_the_same_values(points in prop::collection::vec(point_strategy(), 1..6)) {
        // Distinct names: one Metric per point, in order.
        let points: Vec<OwnedPoint> = points
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| { p.name = format!("{}{i}", p.name); p })
            .collect();
        let encoded: Vec<_> = points.iter().map(to_point).collect();
        let req = frame_metrics(&encoded);
        let got = &req.resource_metrics[0].scope_metrics[0].metrics;
        let want: Vec<_> = points.iter().map(expect_metric).collect();
        prop_assert_eq!(got, &want);
        // Half of each point's attributes in a set: the same metrics.
        let sets: Vec<_> = encoded
            .iter()
            .map(|p| otlpflow::AttributeSet::new(&p.attributes[..p.attributes.len() / 2]))
            .collect();
        let split: Vec<_> = encoded
            .iter()
            .zip(&sets)
            .map(|(p, set)| otlpflow::MetricPoint {
                attribute_set: Some(set),
                attributes: &p.attributes[p.attributes.len() / 2..],
                ..*p
            })
            .collect();
        let req = frame_metrics(&split);
        prop_assert_eq!(&req.resource_metrics[0].scope_metrics[0].metrics, &want);
    }

    #[test]
    fn points_of_one_metric_are_grouped_into_one(p in point_strategy(), n in 2usize..5) {
        // The same metric identity n times: one Metric carrying n points.
        let encoded: Vec<_> = (0..n).map(|_| to_point(&p)).collect();
        let req = frame_metrics(&encoded);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        prop_assert_eq!(metrics.len(), 1);
        let mut want = expect_metric(&p);
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        match want.data.as_mut() {
            Some(Data::Gauge(g)) => g.data_points = vec![g.data_points[0].clone(); n],
            Some(Data::Sum(s)) => s.data_points = vec![s.data_points[0].clone(); n],
            Some(Data::Histogram(h)) => h.data_points = vec![h.data_points[0].clone(); n],
            Some(Data::ExponentialHistogram(h)) => {
                h.data_points = vec![h.data_points[0].clone(); n]
            }
            _ => unreachable!(),
        }
        prop_assert_eq!(&metrics[0], &want);
    }
}
