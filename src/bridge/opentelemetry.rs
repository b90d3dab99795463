//! Processors for the OpenTelemetry Rust SDK (`opentelemetry_sdk` 0.33,
//! feature `opentelemetry`): a program keeps `opentelemetry::global`, its
//! tracers and loggers and every instrumentation built on them, and changes
//! only the provider's processor.
//!
//! ```no_run
//! # let pipeline = otlpflow::Pipeline::builder().start().unwrap();
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     .with_span_processor(otlpflow::opentelemetry::SpanProcessor::new(&pipeline))
//!     .build();
//! opentelemetry::global::set_tracer_provider(provider);
//! ```
//!
//! `on_end` encodes the finished span (events, links, status, trace state,
//! flags with the parent-is-remote bits, the instrumentation scope with its
//! attributes, dropped counts) into a ring at once: no batch queue, no
//! channel, no vector of spans; a refusal is counted by the pipeline like
//! any other. `force_flush` and `shutdown_with_timeout` are the pipeline's.
//! The SDK's resource (`set_resource`, or a metric export's) is used when
//! the pipeline was given none (no service name, version or attribute);
//! otherwise the pipeline's own is exported.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::AnyValue;
use opentelemetry::trace::{SpanKind as OtelKind, Status as OtelStatus};
use opentelemetry::{Array, InstrumentationScope, KeyValue as OtelKeyValue, Value as OtelValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::SdkLogRecord;
use opentelemetry_sdk::trace::SpanData;
use parking_lot::RwLock;

use crate::engine::{Pipeline, Scope};
use crate::record::{
    Event, KeyValue, Link, LogRecord, OwnedValue, Severity, Span, SpanKind, Status, StatusCode,
    Value,
};

/// OTLP span flags: whether the parent's remote-ness is known, and is.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The SDK's scopes, registered with the pipeline once each.
#[derive(Default)]
struct ScopeCache(RwLock<Vec<(InstrumentationScope, Scope)>>);

impl ScopeCache {
    fn get(&self, pipeline: &Pipeline, s: &InstrumentationScope) -> Scope {
        if let Some((_, id)) = self.0.read().iter().find(|(k, _)| k == s) {
            return *id;
        }
        let attrs: Vec<(String, OwnedValue)> = s
            .attributes()
            .map(|kv| (kv.key.as_str().to_owned(), owned(&kv.value)))
            .collect();
        let id = pipeline.scope_with_attributes(s.name(), s.version().unwrap_or(""), &attrs);
        self.0.write().push((s.clone(), id));
        id
    }
}

fn owned(v: &OtelValue) -> OwnedValue {
    match v {
        OtelValue::Bool(b) => OwnedValue::Bool(*b),
        OtelValue::I64(i) => OwnedValue::I64(*i),
        OtelValue::F64(f) => OwnedValue::F64(*f),
        OtelValue::String(s) => OwnedValue::Str(s.as_str().to_owned()),
        OtelValue::Array(a) => OwnedValue::Array(match a {
            Array::Bool(v) => v.iter().map(|b| OwnedValue::Bool(*b)).collect(),
            Array::I64(v) => v.iter().map(|i| OwnedValue::I64(*i)).collect(),
            Array::F64(v) => v.iter().map(|f| OwnedValue::F64(*f)).collect(),
            Array::String(v) => v
                .iter()
                .map(|s| OwnedValue::Str(s.as_str().to_owned()))
                .collect(),
            _ => Vec::new(),
        }),
        _ => OwnedValue::Str(v.to_string()),
    }
}

/// Array elements of every attribute in `lists`, in order (the attribute
/// values borrow their slices from here).
fn array_elements<'a>(lists: &[&'a [OtelKeyValue]]) -> Vec<Value<'a>> {
    let mut out = Vec::new();
    for list in lists {
        for kv in list.iter() {
            if let OtelValue::Array(a) = &kv.value {
                match a {
                    Array::Bool(v) => out.extend(v.iter().map(|b| Value::Bool(*b))),
                    Array::I64(v) => out.extend(v.iter().map(|i| Value::I64(*i))),
                    Array::F64(v) => out.extend(v.iter().map(|f| Value::F64(*f))),
                    Array::String(v) => out.extend(v.iter().map(|s| Value::Str(s.as_str()))),
                    _ => {}
                }
            }
        }
    }
    out
}

/// The attributes of `list`, taking array slices from `elements` at
/// `*next`.
fn attributes<'a>(
    list: &'a [OtelKeyValue],
    elements: &'a [Value<'a>],
    next: &mut usize,
    out: &mut Vec<KeyValue<'a>>,
) {
    for kv in list {
        let v = match &kv.value {
            OtelValue::Bool(b) => Value::Bool(*b),
            OtelValue::I64(i) => Value::I64(*i),
            OtelValue::F64(f) => Value::F64(*f),
            OtelValue::String(s) => Value::Str(s.as_str()),
            OtelValue::Array(a) => {
                let n = match a {
                    Array::Bool(v) => v.len(),
                    Array::I64(v) => v.len(),
                    Array::F64(v) => v.len(),
                    Array::String(v) => v.len(),
                    _ => 0,
                };
                let slice = &elements[*next..*next + n];
                *next += n;
                Value::Array(slice)
            }
            _ => continue,
        };
        out.push(KeyValue::new(kv.key.as_str(), v));
    }
}

/// What the SDK processors share: the pipeline, its scopes for the SDK's
/// instrumentation scopes, and how long `force_flush` waits.
struct Common {
    pipeline: Pipeline,
    scopes: ScopeCache,
    timeout: Duration,
}

impl Common {
    fn new(pipeline: &Pipeline) -> Common {
        Common {
            pipeline: pipeline.clone(),
            scopes: ScopeCache::default(),
            timeout: Duration::from_secs(30),
        }
    }

    fn scope(&self, s: &InstrumentationScope) -> Scope {
        self.scopes.get(&self.pipeline, s)
    }

    fn flush(&self) -> OTelSdkResult {
        match self.pipeline.flush(self.timeout) {
            Ok(_) => Ok(()),
            Err(e) if e.is_shutdown() => Err(OTelSdkError::AlreadyShutdown),
            Err(e) if e.is_timeout() => Err(OTelSdkError::Timeout(self.timeout)),
            Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
        }
    }

    fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        match self.pipeline.shutdown(timeout) {
            Ok(_) => Ok(()),
            Err(e) if e.is_shutdown() => Err(OTelSdkError::AlreadyShutdown),
            Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
        }
    }

    /// Offers the SDK's resource to the pipeline (adopted only if the
    /// pipeline has none of its own).
    fn adopt(&self, resource: &opentelemetry_sdk::Resource) {
        let attrs: Vec<(String, OwnedValue)> = resource
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), owned(v)))
            .collect();
        self.pipeline.adopt_resource(&attrs);
    }
}

impl std::fmt::Debug for Common {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("otlpflow").finish_non_exhaustive()
    }
}

/// An `opentelemetry_sdk` span processor recording into a pipeline.
#[derive(Debug)]
pub struct SpanProcessor(Common);

impl SpanProcessor {
    /// A processor over `pipeline`; `force_flush` waits up to 30 s.
    pub fn new(pipeline: &Pipeline) -> SpanProcessor {
        SpanProcessor(Common::new(pipeline))
    }

    /// How long `force_flush` waits.
    pub fn with_flush_timeout(mut self, d: Duration) -> Self {
        self.0.timeout = d;
        self
    }
}

impl opentelemetry_sdk::trace::SpanProcessor for SpanProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let lists: Vec<&[OtelKeyValue]> = std::iter::once(&span.attributes[..])
            .chain(span.events.iter().map(|e| &e.attributes[..]))
            .chain(span.links.iter().map(|l| &l.attributes[..]))
            .collect();
        let elements = array_elements(&lists);
        let mut next = 0;
        let mut kvs = Vec::new();
        attributes(&span.attributes, &elements, &mut next, &mut kvs);
        let own = kvs.len();
        let mut ranges = Vec::with_capacity(span.events.len() + span.links.len());
        for list in &lists[1..] {
            let start = kvs.len();
            attributes(list, &elements, &mut next, &mut kvs);
            ranges.push(start..kvs.len());
        }
        let events: Vec<Event<'_>> = span
            .events
            .iter()
            .zip(&ranges)
            .map(|(e, r)| Event {
                time_unix_nano: unix_nanos(e.timestamp),
                name: &e.name,
                attributes: &kvs[r.clone()],
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect();
        let states: Vec<String> = span
            .links
            .iter()
            .map(|l| l.span_context.trace_state().header())
            .collect();
        let links: Vec<Link<'_>> = span
            .links
            .iter()
            .zip(&ranges[span.events.len()..])
            .zip(&states)
            .map(|((l, r), state)| Link {
                trace_id: l.span_context.trace_id().to_bytes(),
                span_id: l.span_context.span_id().to_bytes(),
                trace_state: state,
                attributes: &kvs[r.clone()],
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.span_context.trace_flags().to_u8() as u32
                    | FLAG_HAS_IS_REMOTE
                    | if l.span_context.is_remote() {
                        FLAG_IS_REMOTE
                    } else {
                        0
                    },
            })
            .collect();
        let (code, message): (StatusCode, Cow<'_, str>) = match &span.status {
            OtelStatus::Unset => (StatusCode::Unset, Cow::Borrowed("")),
            OtelStatus::Ok => (StatusCode::Ok, Cow::Borrowed("")),
            OtelStatus::Error { description } => (StatusCode::Error, Cow::Borrowed(description)),
        };
        let trace_state = span.span_context.trace_state().header();
        let parent = span.parent_span_id.to_bytes();
        let remote_bits = if parent == [0; 8] {
            0
        } else if span.parent_span_is_remote {
            FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE
        } else {
            FLAG_HAS_IS_REMOTE
        };
        let record = Span {
            trace_id: span.span_context.trace_id().to_bytes(),
            span_id: span.span_context.span_id().to_bytes(),
            trace_state: &trace_state,
            parent_span_id: parent,
            flags: span.span_context.trace_flags().to_u8() as u32 | remote_bits,
            name: &span.name,
            kind: match span.span_kind {
                OtelKind::Client => SpanKind::Client,
                OtelKind::Server => SpanKind::Server,
                OtelKind::Producer => SpanKind::Producer,
                OtelKind::Consumer => SpanKind::Consumer,
                OtelKind::Internal => SpanKind::Internal,
            },
            start_time_unix_nano: unix_nanos(span.start_time),
            end_time_unix_nano: unix_nanos(span.end_time),
            attributes: &kvs[..own],
            dropped_attributes_count: span.dropped_attributes_count,
            events: &events,
            dropped_events_count: span.events.dropped_count,
            links: &links,
            dropped_links_count: span.links.dropped_count,
            status: Status {
                code,
                message: &message,
            },
        };
        let scope = self.0.scope(&span.instrumentation_scope);
        // A refusal is counted by the pipeline, by reason.
        let _ = self.0.pipeline.record_span(&scope, &record);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.adopt(resource);
    }
}

/// An `opentelemetry_sdk` log processor recording into a pipeline.
#[derive(Debug)]
pub struct LogProcessor(Common);

impl LogProcessor {
    /// A processor over `pipeline`; `force_flush` waits up to 30 s.
    pub fn new(pipeline: &Pipeline) -> LogProcessor {
        LogProcessor(Common::new(pipeline))
    }
}

/// A log attribute or body as an otlpflow value: scalars as they are,
/// lists and maps (rare in logs) as their text.
fn any_value<'a>(v: &'a AnyValue, text: &'a mut Option<String>) -> Value<'a> {
    match v {
        AnyValue::Int(i) => Value::I64(*i),
        AnyValue::Double(f) => Value::F64(*f),
        AnyValue::String(s) => Value::Str(s.as_str()),
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::Bytes(b) => Value::Bytes(b),
        other => Value::Str(text.insert(format!("{other:?}"))),
    }
}

impl opentelemetry_sdk::logs::LogProcessor for LogProcessor {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        let attrs_src: Vec<_> = data.attributes_iter().collect();
        let mut texts: Vec<Option<String>> = vec![None; attrs_src.len() + 1];
        let (body_text, attr_texts) = texts.split_at_mut(1);
        let attrs: Vec<KeyValue<'_>> = attrs_src
            .iter()
            .zip(attr_texts.iter_mut())
            .map(|((k, v), t)| KeyValue::new(k.as_str(), any_value(v, t)))
            .collect();
        let body = data.body().map(|b| any_value(b, &mut body_text[0]));
        let (trace_id, span_id, flags) = data.trace_context().map_or(([0; 16], [0; 8], 0), |c| {
            (
                c.trace_id.to_bytes(),
                c.span_id.to_bytes(),
                c.trace_flags.map_or(0, |f| f.to_u8() as u32),
            )
        });
        let observed = data
            .observed_timestamp()
            .map_or_else(crate::clock::now_unix_nano, unix_nanos);
        let log = LogRecord {
            time_unix_nano: data.timestamp().map_or(0, unix_nanos),
            observed_time_unix_nano: observed,
            severity_number: Severity(data.severity_number().map_or(0, |s| s as u8)),
            severity_text: data.severity_text().unwrap_or(""),
            body,
            attributes: &attrs,
            dropped_attributes_count: 0,
            flags,
            trace_id,
            span_id,
            event_name: data.event_name().unwrap_or(""),
        };
        let scope = self.0.scope(instrumentation);
        // A refusal is counted by the pipeline, by reason.
        let _ = self.0.pipeline.record_log(&scope, &log);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.adopt(resource);
    }
}

/// An `opentelemetry_sdk` push metric exporter recording every data point
/// into a pipeline (use it with the SDK's `PeriodicReader`). Each point is
/// a record of its own; points of one metric that meet in a batch are sent
/// as one `Metric`, as the SDK's own exporter does.
#[derive(Debug)]
pub struct MetricExporter {
    common: Common,
    temporality: opentelemetry_sdk::metrics::Temporality,
}

impl MetricExporter {
    /// An exporter over `pipeline` asking the SDK for cumulative sums and
    /// histograms (the SDK's default).
    pub fn new(pipeline: &Pipeline) -> MetricExporter {
        MetricExporter {
            common: Common::new(pipeline),
            temporality: opentelemetry_sdk::metrics::Temporality::Cumulative,
        }
    }

    /// Asks the SDK for delta (or cumulative) temporality.
    pub fn with_temporality(mut self, t: opentelemetry_sdk::metrics::Temporality) -> Self {
        self.temporality = t;
        self
    }

    fn record_all(&self, metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics) {
        use opentelemetry_sdk::metrics::data::AggregatedMetrics;
        for sm in metrics.scope_metrics() {
            let scope = self.common.scope(sm.scope());
            for m in sm.metrics() {
                let mut out = PointSink {
                    exporter: self,
                    scope,
                    metric: m,
                };
                match m.data() {
                    AggregatedMetrics::F64(d) => out.all(d, |v| crate::record::Number::F64(*v)),
                    AggregatedMetrics::I64(d) => out.all(d, |v| crate::record::Number::I64(*v)),
                    AggregatedMetrics::U64(d) => out.all(d, |v| {
                        i64::try_from(*v).map_or(
                            crate::record::Number::F64(*v as f64),
                            crate::record::Number::I64,
                        )
                    }),
                }
            }
        }
    }
}

fn temporality(t: opentelemetry_sdk::metrics::Temporality) -> crate::record::Temporality {
    match t {
        opentelemetry_sdk::metrics::Temporality::Delta => crate::record::Temporality::Delta,
        _ => crate::record::Temporality::Cumulative,
    }
}

/// The SDK's value types as the `f64` of a histogram's sum, min and max.
trait AsF64: Copy {
    fn as_f64(self) -> f64;
}

impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

impl AsF64 for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AsF64 for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

/// Records the points of one metric.
struct PointSink<'a> {
    exporter: &'a MetricExporter,
    scope: Scope,
    metric: &'a opentelemetry_sdk::metrics::data::Metric,
}

impl PointSink<'_> {
    fn record(
        &mut self,
        attrs: &[&OtelKeyValue],
        start: Option<SystemTime>,
        time: SystemTime,
        data: crate::record::MetricData<'_>,
    ) {
        let owned: Vec<OtelKeyValue> = attrs.iter().map(|kv| (*kv).clone()).collect();
        let elements = array_elements(&[&owned[..]]);
        let mut kvs = Vec::with_capacity(owned.len());
        attributes(&owned, &elements, &mut 0, &mut kvs);
        let point = crate::record::MetricPoint {
            name: self.metric.name(),
            description: self.metric.description(),
            unit: self.metric.unit(),
            attributes: &kvs,
            start_time_unix_nano: start.map_or(0, unix_nanos),
            time_unix_nano: unix_nanos(time),
            flags: 0,
            data,
        };
        // A refusal is counted by the pipeline, by reason.
        let _ = self
            .exporter
            .common
            .pipeline
            .record_metric(&self.scope, &point);
    }

    fn all<T: AsF64>(
        &mut self,
        data: &opentelemetry_sdk::metrics::data::MetricData<T>,
        number: impl Fn(&T) -> crate::record::Number,
    ) {
        use crate::record::{ExpBuckets, ExpHistogramPoint, HistogramPoint, MetricData};
        use opentelemetry_sdk::metrics::data::MetricData as Data;
        match data {
            Data::Gauge(g) => {
                for p in g.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    self.record(
                        &a,
                        g.start_time(),
                        g.time(),
                        MetricData::Gauge(number(&p.value())),
                    );
                }
            }
            Data::Sum(s) => {
                for p in s.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    let d = MetricData::Sum {
                        value: number(&p.value()),
                        monotonic: s.is_monotonic(),
                        temporality: temporality(s.temporality()),
                    };
                    self.record(&a, Some(s.start_time()), s.time(), d);
                }
            }
            Data::Histogram(h) => {
                for p in h.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    let bounds: Vec<f64> = p.bounds().collect();
                    let counts: Vec<u64> = p.bucket_counts().collect();
                    let d = MetricData::Histogram {
                        point: HistogramPoint {
                            count: p.count(),
                            sum: Some(p.sum().as_f64()),
                            min: p.min().map(AsF64::as_f64),
                            max: p.max().map(AsF64::as_f64),
                            bounds: &bounds,
                            bucket_counts: &counts,
                        },
                        temporality: temporality(h.temporality()),
                    };
                    self.record(&a, Some(h.start_time()), h.time(), d);
                }
            }
            Data::ExponentialHistogram(h) => {
                for p in h.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    let pos: Vec<u64> = p.positive_bucket().counts().collect();
                    let neg: Vec<u64> = p.negative_bucket().counts().collect();
                    let d = MetricData::ExponentialHistogram {
                        point: ExpHistogramPoint {
                            count: p.count() as u64,
                            sum: Some(p.sum().as_f64()),
                            min: p.min().map(AsF64::as_f64),
                            max: p.max().map(AsF64::as_f64),
                            scale: p.scale() as i32,
                            zero_count: p.zero_count(),
                            zero_threshold: p.zero_threshold(),
                            positive: ExpBuckets {
                                offset: p.positive_bucket().offset(),
                                counts: &pos,
                            },
                            negative: ExpBuckets {
                                offset: p.negative_bucket().offset(),
                                counts: &neg,
                            },
                        },
                        temporality: temporality(h.temporality()),
                    };
                    self.record(&a, Some(h.start_time()), h.time(), d);
                }
            }
        }
    }
}

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for MetricExporter {
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> OTelSdkResult {
        if self.common.pipeline.is_shut_down() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.common.adopt(metrics.resource());
        self.record_all(metrics);
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.common.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.common.shutdown(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.temporality
    }
}
