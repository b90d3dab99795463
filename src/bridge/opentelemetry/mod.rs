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
//! the pipeline was given none (no service name, version or attribute) but
//! by `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, which the SDK's
//! resource reads too; otherwise the pipeline's own is exported.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind as OtelKind, Status as OtelStatus};
use opentelemetry::{Array, InstrumentationScope, KeyValue as OtelKeyValue, Value as OtelValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::SpanData;
use parking_lot::RwLock;

mod any_value;
mod logs;
mod metrics;

pub use logs::LogProcessor;
pub use metrics::MetricExporter;

use crate::engine::{Pipeline, Scope};
use crate::record::{Event, KeyValue, Link, OwnedValue, Span, SpanKind, Status, StatusCode, Value};

/// OTLP span flags: whether the parent's remote-ness is known, and is.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The SDK's scopes, registered with the pipeline once each, found by
/// hash for every span (a list searched in turn cost each span a comparison
/// with every scope before its own). Bounded as the pipeline's own table
/// is (`max_scopes`): past it, a scope is looked up in the pipeline each
/// time (which answers the overflow scope for one it has no room for).
#[derive(Default)]
struct ScopeCache(RwLock<std::collections::HashMap<InstrumentationScope, Scope>>);

impl ScopeCache {
    fn get(&self, pipeline: &Pipeline, s: &InstrumentationScope) -> Scope {
        if let Some(id) = self.0.read().get(s) {
            return *id;
        }
        let attrs: Vec<(String, OwnedValue)> = s
            .attributes()
            .map(|kv| (kv.key.as_str().to_owned(), owned(&kv.value)))
            .collect();
        let id = pipeline.scope_with_attributes(s.name(), s.version().unwrap_or(""), &attrs);
        let mut cache = self.0.write();
        if cache.len() < pipeline.max_scopes() {
            cache.insert(s.clone(), id);
        }
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
            attribute_set: None,
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
