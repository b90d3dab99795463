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
//! body, the level as the severity, the target as the scope; a log
//! record also carries the event's `code.file.path` and
//! `code.line.number`. Scopes are the targets, up to 256 of them; past
//! that they share `otlpflow.overflow`
//! ([`OtlpLayer::scopes_overflowed`] counts it).
//!
//! Cost: the layer keeps one state per live span in the registry's
//! extensions, all of it inline and bounded (32 fields for the span and 32
//! for its events, 8 events, 1 KiB of text for string and `Debug` values;
//! past those a value or event is counted as dropped), and encodes the span
//! straight into the ring when it closes, from the stack: no allocation per
//! span beyond the registry's slot, no intermediate span data, no channel,
//! no batch queue. (Events recorded as log records format their text.) What otlpflow's own threads record
//! (its HTTP/2 client logs through `tracing`) is ignored, so that
//! exporting never feeds itself.

use std::fmt::Write as _;

use ::tracing::field::{Field, Visit};
use ::tracing::span::{Attributes, Id, Record};
use ::tracing::{Event as TracingEvent, Level, Subscriber};
use arrayvec::ArrayVec;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

mod span_state;

use self::span_state::{
    FieldValue, KeptEvent, SpanEventVisitor, SpanState, SpanVisitor, MAX_EVENTS, MAX_FIELDS,
};
use super::traceparent::TraceContext;
use super::{new_span_id, new_trace_id, Scopes};
use crate::clock::now_unix_nano;
use crate::engine::Pipeline;
use crate::record::{
    Event, KeyValue, LogRecord, OwnedValue, Severity, Span, SpanKind, Status, StatusCode, Value,
};

/// The layer over `pipeline` (see the module docs).
pub fn layer(pipeline: &Pipeline) -> OtlpLayer {
    OtlpLayer {
        scopes: Scopes::new(pipeline),
        pipeline: pipeline.clone(),
        events_as_logs: false,
        code_location: false,
    }
}

/// A `tracing_subscriber::Layer` recording into an otlpflow pipeline.
pub struct OtlpLayer {
    pipeline: Pipeline,
    scopes: Scopes,
    events_as_logs: bool,
    code_location: bool,
}

impl OtlpLayer {
    /// Events inside a span become log records carrying the span's trace
    /// context, instead of span events (default: span events).
    pub fn events_as_logs(mut self, yes: bool) -> Self {
        self.events_as_logs = yes;
        self
    }

    /// Each span also carries where it was made: `code.file.path`,
    /// `code.line.number` and its module as `code.namespace`, as
    /// tracing-opentelemetry's `with_location` (on there by default) adds
    /// them. Off by default: three attributes on every span, the same for
    /// every span of a call site.
    pub fn with_code_location(mut self, yes: bool) -> Self {
        self.code_location = yes;
        self
    }

    /// Records made under the shared overflow scope because more than 256
    /// targets were seen.
    pub fn scopes_overflowed(&self) -> u64 {
        self.scopes.overflowed()
    }
}

/// Reads an event's fields for a log record: `message` apart, the rest as
/// attributes.
#[derive(Default)]
struct EventVisitor {
    message: String,
    fields: Vec<(&'static str, OwnedValue)>,
}

impl Visit for EventVisitor {
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.fields.push((f.name(), OwnedValue::I64(v)));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        let v = i64::try_from(v).map_or(OwnedValue::F64(v as f64), OwnedValue::I64);
        self.fields.push((f.name(), v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.fields.push((f.name(), OwnedValue::F64(v)));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.fields.push((f.name(), OwnedValue::Bool(v)));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        if f.name() == "message" {
            self.message = v.to_owned();
        } else {
            self.fields.push((f.name(), OwnedValue::Str(v.to_owned())));
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{v:?}");
        if f.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((f.name(), OwnedValue::Str(text)));
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

/// The event's fields as attributes (each a scalar: the visitor makes no
/// arrays).
fn log_key_values<'a>(fields: &'a [(&'static str, OwnedValue)]) -> Vec<KeyValue<'a>> {
    fields
        .iter()
        .filter_map(|(k, v)| Some(KeyValue::new(k, v.scalar()?)))
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
            status_message: (0, 0),
            name: None,
            remote: None,
            fields: ArrayVec::new(),
            event_fields: ArrayVec::new(),
            events: ArrayVec::new(),
            text: ArrayVec::new(),
            dropped_attributes: 0,
            dropped_events: 0,
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
        let meta = event.metadata();
        let span = ctx.event_span(event);
        if let (Some(span), false) = (&span, self.events_as_logs) {
            let mut ext = span.extensions_mut();
            if let Some(state) = ext.get_mut::<SpanState>() {
                if state.events.is_full() {
                    state.dropped_events += 1;
                    return;
                }
                // Straight into the span's state: no allocation.
                let first = state.event_fields.len();
                let mut v = SpanEventVisitor { state, name: None };
                event.record(&mut v);
                let name = v.name.or_else(|| v.state.push_text(meta.name()));
                let state = v.state;
                let last = state.event_fields.len();
                let kept = KeptEvent {
                    time,
                    name: name.unwrap_or((0, 0)),
                    fields: (first as u8, last as u8),
                };
                // Not full: checked above.
                let _ = state.events.try_push(kept);
                return;
            }
        }
        let mut v = EventVisitor::default();
        event.record(&mut v);
        let (trace_id, span_id) = span
            .and_then(|s| {
                let ext = s.extensions();
                ext.get::<SpanState>().map(|st| (st.trace_id, st.span_id))
            })
            .unwrap_or(([0; 16], [0; 8]));
        let mut attrs = log_key_values(&v.fields);
        if let Some(file) = meta.file() {
            attrs.push(KeyValue::new("code.file.path", Value::Str(file)));
        }
        if let Some(line) = meta.line() {
            attrs.push(KeyValue::new("code.line.number", Value::I64(line as i64)));
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
        // Everything borrowed from the state, on the stack.
        let kv = |(k, v): &(&'static str, FieldValue)| KeyValue::new(k, state.value(*v));
        let mut attrs: ArrayVec<KeyValue<'_>, { MAX_FIELDS + 3 }> =
            state.fields.iter().map(kv).collect();
        if self.code_location {
            if let Some(file) = meta.file() {
                attrs.push(KeyValue::new("code.file.path", Value::Str(file)));
            }
            if let Some(line) = meta.line() {
                attrs.push(KeyValue::new("code.line.number", Value::I64(line as i64)));
            }
            if let Some(module) = meta.module_path() {
                attrs.push(KeyValue::new("code.namespace", Value::Str(module)));
            }
        }
        let event_attrs: ArrayVec<KeyValue<'_>, MAX_FIELDS> =
            state.event_fields.iter().map(kv).collect();
        let events: ArrayVec<Event<'_>, MAX_EVENTS> = state
            .events
            .iter()
            .map(|e| Event {
                time_unix_nano: e.time,
                name: state.text(e.name),
                attributes: &event_attrs[e.fields.0 as usize..e.fields.1 as usize],
                dropped_attributes_count: 0,
            })
            .collect();
        let record = Span {
            trace_id: state.trace_id,
            span_id: state.span_id,
            parent_span_id: state.parent_span_id,
            flags: state.flags,
            name: state.name.map_or(meta.name(), |n| state.text(n)),
            kind: state.kind,
            start_time_unix_nano: state.start,
            end_time_unix_nano: now_unix_nano(),
            attributes: &attrs,
            dropped_attributes_count: state.dropped_attributes,
            events: &events,
            dropped_events_count: state.dropped_events,
            status: Status {
                code: state.status,
                message: state.text(state.status_message),
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
