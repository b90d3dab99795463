//! A `tracing` layer: every `tracing` span becomes an OTLP span when it
//! closes, and every `tracing` event a span event (inside a span) or a log
//! record (outside one, or inside one with `events_as_logs`).
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! # let pipeline = otlpflow::Pipeline::builder().start().unwrap();
//! tracing_subscriber::registry()
//!     .with(otlpflow::tracing::layer(&pipeline))
//!     .init();
//! let span = tracing::info_span!("GET /items", otel.kind = "server", http.response.status_code = 200);
//! let _in = span.enter();
//! tracing::info!(cache.key = 42, "cache miss");   // a span event
//! ```
//!
//! Mapping: the span's name (or an `otel.name` field), kind from
//! `otel.kind` (`server`, `client`, `producer`, `consumer`, `internal`),
//! start and end times, a trace id made for each root span and a span id
//! for each span (a per-thread generator), the parent from the registry,
//! so a tree of `tracing` spans arrives as one trace; fields as typed
//! attributes (i64, f64, bool, str; `Debug` values as strings), including
//! those recorded later with `Span::record`; `otel.status_code`
//! (`ok`/`error`) and an `error` field as the status; a `traceparent`
//! field on a root span as its remote parent (see [`current_context`] for
//! the other direction). Events: the `message` as the event name or log
//! body, the level as the severity, the target as the scope. Scopes are
//! the targets, up to 256 of them; past that they share `otlpflow.overflow`
//! ([`OtlpLayer::scopes_overflowed`] counts it).
//!
//! Cost: the layer keeps one state per live span in the registry's
//! extensions (a box `tracing-subscriber` allocates anyway), its field
//! values in one vector sized to the span's declared fields, and encodes
//! the span straight into the ring when it closes: no intermediate span
//! data, no channel, no batch queue. What otlpflow's own threads record
//! (its HTTP/2 client logs through `tracing`) is ignored, so that
//! exporting never feeds itself.

use std::fmt::Write as _;

use ::tracing::field::{Field, Visit};
use ::tracing::span::{Attributes, Id, Record};
use ::tracing::{Event as TracingEvent, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::traceparent::TraceContext;
use super::{new_span_id, new_trace_id, Scopes};
use crate::clock::now_unix_nano;
use crate::engine::Pipeline;
use crate::record::{
    Event, KeyValue, LogRecord, Severity, Span, SpanKind, Status, StatusCode, Value,
};

/// The layer over `pipeline` (see the module docs).
pub fn layer(pipeline: &Pipeline) -> OtlpLayer {
    OtlpLayer {
        scopes: Scopes::new(pipeline),
        pipeline: pipeline.clone(),
        events_as_logs: false,
    }
}

/// A `tracing_subscriber::Layer` recording into an otlpflow pipeline.
pub struct OtlpLayer {
    pipeline: Pipeline,
    scopes: Scopes,
    events_as_logs: bool,
}

impl OtlpLayer {
    /// Events inside a span become log records carrying the span's trace
    /// context, instead of span events (default: span events).
    pub fn events_as_logs(mut self, yes: bool) -> Self {
        self.events_as_logs = yes;
        self
    }

    /// Records made under the shared overflow scope because more than 256
    /// targets were seen.
    pub fn scopes_overflowed(&self) -> u64 {
        self.scopes.overflowed()
    }
}

/// A field value as the layer keeps it until the span ends.
#[derive(Debug, Clone)]
enum FieldValue {
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    fn as_value(&self) -> Value<'_> {
        match self {
            FieldValue::I64(v) => Value::I64(*v),
            FieldValue::F64(v) => Value::F64(*v),
            FieldValue::Bool(v) => Value::Bool(*v),
            FieldValue::Str(s) => Value::Str(s),
        }
    }
}

type Fields = Vec<(&'static str, FieldValue)>;

/// A span event as kept until its span ends.
struct KeptEvent {
    time: u64,
    name: String,
    fields: Fields,
}

/// What the layer keeps for a live span (in the registry's extensions).
struct SpanState {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: [u8; 8],
    flags: u32,
    start: u64,
    kind: SpanKind,
    status: StatusCode,
    status_message: String,
    name: Option<String>,
    remote: Option<TraceContext>,
    fields: Fields,
    events: Vec<KeptEvent>,
}

/// Puts a field into `fields`, replacing an earlier value of the same name
/// (`Span::record` of a declared field).
fn put(fields: &mut Fields, name: &'static str, v: FieldValue) {
    match fields.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = v,
        None => fields.push((name, v)),
    }
}

/// Reads a span's fields, taking the `otel.*`, `error` and `traceparent`
/// ones as the span's own properties.
struct SpanVisitor<'a>(&'a mut SpanState);

impl SpanVisitor<'_> {
    fn special(&mut self, name: &str, text: &str) -> bool {
        let s = &mut *self.0;
        match name {
            "otel.kind" | "span.kind" => {
                s.kind = match text.to_ascii_lowercase().as_str() {
                    "server" => SpanKind::Server,
                    "client" => SpanKind::Client,
                    "producer" => SpanKind::Producer,
                    "consumer" => SpanKind::Consumer,
                    "internal" => SpanKind::Internal,
                    _ => SpanKind::Unspecified,
                };
            }
            "otel.status_code" => {
                s.status = match text.to_ascii_lowercase().as_str() {
                    "ok" => StatusCode::Ok,
                    "error" => StatusCode::Error,
                    _ => StatusCode::Unset,
                };
            }
            "otel.status_message" | "otel.status_description" => s.status_message = text.into(),
            "otel.name" => s.name = Some(text.into()),
            "traceparent" => s.remote = TraceContext::parse(text),
            "error" => {
                s.status = StatusCode::Error;
                s.status_message = text.into();
            }
            _ => return false,
        }
        true
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_i64(&mut self, f: &Field, v: i64) {
        put(&mut self.0.fields, f.name(), FieldValue::I64(v));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        let v = i64::try_from(v).map_or(FieldValue::F64(v as f64), FieldValue::I64);
        put(&mut self.0.fields, f.name(), v);
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        put(&mut self.0.fields, f.name(), FieldValue::F64(v));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        put(&mut self.0.fields, f.name(), FieldValue::Bool(v));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        if !self.special(f.name(), v) {
            put(&mut self.0.fields, f.name(), FieldValue::Str(v.to_owned()));
        }
    }
    fn record_error(&mut self, f: &Field, v: &(dyn std::error::Error + 'static)) {
        let text = v.to_string();
        if !self.special(f.name(), &text) {
            put(&mut self.0.fields, f.name(), FieldValue::Str(text));
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{v:?}");
        if !self.special(f.name(), &text) {
            put(&mut self.0.fields, f.name(), FieldValue::Str(text));
        }
    }
}

/// Reads an event's fields: `message` apart, the rest as attributes.
#[derive(Default)]
struct EventVisitor {
    message: String,
    fields: Fields,
}

impl Visit for EventVisitor {
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.fields.push((f.name(), FieldValue::I64(v)));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        let v = i64::try_from(v).map_or(FieldValue::F64(v as f64), FieldValue::I64);
        self.fields.push((f.name(), v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.fields.push((f.name(), FieldValue::F64(v)));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.fields.push((f.name(), FieldValue::Bool(v)));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        if f.name() == "message" {
            self.message = v.to_owned();
        } else {
            self.fields.push((f.name(), FieldValue::Str(v.to_owned())));
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{v:?}");
        if f.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((f.name(), FieldValue::Str(text)));
        }
    }
}

/// OTLP severity of a `tracing` level.
fn severity(level: &Level) -> Severity {
    match *level {
        Level::TRACE => Severity::TRACE,
        Level::DEBUG => Severity::DEBUG,
        Level::INFO => Severity::INFO,
        Level::WARN => Severity::WARN,
        _ => Severity::ERROR,
    }
}

fn key_values(fields: &Fields) -> Vec<KeyValue<'_>> {
    fields
        .iter()
        .map(|(k, v)| KeyValue::new(k, v.as_value()))
        .collect()
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // What otlpflow's own threads record (h2 logs through `tracing`)
        // is not exported: exporting must never feed itself.
        if crate::threads::is_own() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut state = SpanState {
            trace_id: [0; 16],
            span_id: new_span_id(),
            parent_span_id: [0; 8],
            flags: 1,
            start: now_unix_nano(),
            kind: SpanKind::Internal,
            status: StatusCode::Unset,
            status_message: String::new(),
            name: None,
            remote: None,
            fields: Vec::with_capacity(attrs.metadata().fields().len()),
            events: Vec::new(),
        };
        attrs.record(&mut SpanVisitor(&mut state));
        let parent = span.parent().and_then(|p| {
            let ext = p.extensions();
            ext.get::<SpanState>()
                .map(|s| (s.trace_id, s.span_id, s.flags))
        });
        match (parent, state.remote) {
            (Some((trace, parent_id, flags)), _) => {
                state.trace_id = trace;
                state.parent_span_id = parent_id;
                state.flags = flags;
            }
            (None, Some(remote)) => {
                state.trace_id = remote.trace_id;
                state.parent_span_id = remote.span_id;
                state.flags = remote.flags as u32;
            }
            (None, None) => state.trace_id = new_trace_id(),
        }
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            values.record(&mut SpanVisitor(state));
        }
    }

    fn on_event(&self, event: &TracingEvent<'_>, ctx: Context<'_, S>) {
        if crate::threads::is_own() {
            return;
        }
        let time = now_unix_nano();
        let mut v = EventVisitor::default();
        event.record(&mut v);
        let meta = event.metadata();
        let span = ctx.event_span(event);
        if let (Some(span), false) = (&span, self.events_as_logs) {
            let mut ext = span.extensions_mut();
            if let Some(state) = ext.get_mut::<SpanState>() {
                let name = if v.message.is_empty() {
                    meta.name().to_owned()
                } else {
                    v.message
                };
                state.events.push(KeptEvent {
                    time,
                    name,
                    fields: v.fields,
                });
                return;
            }
        }
        let (trace_id, span_id) = span
            .and_then(|s| {
                let ext = s.extensions();
                ext.get::<SpanState>().map(|st| (st.trace_id, st.span_id))
            })
            .unwrap_or(([0; 16], [0; 8]));
        let mut attrs = key_values(&v.fields);
        if let Some(file) = meta.file() {
            attrs.push(KeyValue::new("code.filepath", Value::Str(file)));
        }
        if let Some(line) = meta.line() {
            attrs.push(KeyValue::new("code.lineno", Value::I64(line as i64)));
        }
        let log = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number: severity(meta.level()),
            severity_text: meta.level().as_str(),
            body: Some(Value::Str(&v.message)),
            attributes: &attrs,
            trace_id,
            span_id,
            ..Default::default()
        };
        let scope = self.scopes.get(&self.pipeline, meta.target());
        // A refusal is counted by the pipeline, by reason.
        let _ = self.pipeline.record_log(&scope, &log);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else {
            return;
        };
        let meta = span.metadata();
        let attrs = key_values(&state.fields);
        let event_attrs: Vec<Vec<KeyValue<'_>>> =
            state.events.iter().map(|e| key_values(&e.fields)).collect();
        let events: Vec<Event<'_>> = state
            .events
            .iter()
            .zip(&event_attrs)
            .map(|(e, a)| Event {
                time_unix_nano: e.time,
                name: &e.name,
                attributes: a,
                dropped_attributes_count: 0,
            })
            .collect();
        let record = Span {
            trace_id: state.trace_id,
            span_id: state.span_id,
            parent_span_id: state.parent_span_id,
            flags: state.flags,
            name: state.name.as_deref().unwrap_or(meta.name()),
            kind: state.kind,
            start_time_unix_nano: state.start,
            end_time_unix_nano: now_unix_nano(),
            attributes: &attrs,
            events: &events,
            status: Status {
                code: state.status,
                message: &state.status_message,
            },
            ..Default::default()
        };
        let scope = self.scopes.get(&self.pipeline, meta.target());
        // A refusal is counted by the pipeline, by reason.
        let _ = self.pipeline.record_span(&scope, &record);
    }
}

/// The trace context of the current `tracing` span, for a `traceparent`
/// header on an outgoing request (`current_context()?.to_header()`).
/// `None` outside a span, or when the layer is not installed over a
/// `tracing_subscriber::Registry`.
pub fn current_context() -> Option<TraceContext> {
    ::tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            let ext = span.extensions();
            let s = ext.get::<SpanState>()?;
            Some(TraceContext {
                trace_id: s.trace_id,
                span_id: s.span_id,
                flags: s.flags as u8,
            })
        })
        .flatten()
}
