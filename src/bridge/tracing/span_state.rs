//! What the `tracing` layer keeps for a live span until it closes, all of
//! it inline and bounded, and the visitors that read a span's fields and
//! its events' fields into it.

use std::fmt::Write as _;

use ::tracing::field::{Field, Visit};
use arrayvec::ArrayVec;

use crate::bridge::traceparent::TraceContext;
use crate::record::{SpanKind, StatusCode, Value};

/// Fields a span keeps (its own, and its events' together); more are
/// counted as dropped.
pub(super) const MAX_FIELDS: usize = 32;
/// Events a span keeps; more are counted as dropped.
pub(super) const MAX_EVENTS: usize = 8;
/// Bytes of text (string and `Debug` values, event names, the status
/// message) a span keeps; a value that does not fit is dropped and
/// counted.
pub(super) const TEXT_BYTES: usize = 1024;

/// A field value as the layer keeps it until the span ends: scalars
/// inline, text as a range of the span's text arena.
#[derive(Debug, Clone, Copy)]
pub(super) enum FieldValue {
    I64(i64),
    F64(f64),
    Bool(bool),
    Text(u16, u16),
}

/// A span event as kept until its span ends: its name in the text arena,
/// its fields a range of the span's event fields.
#[derive(Clone, Copy)]
pub(super) struct KeptEvent {
    pub(super) time: u64,
    pub(super) name: (u16, u16),
    pub(super) fields: (u8, u8),
}

/// What the layer keeps for a live span, in the registry's extensions: all
/// of it inline and bounded, so that a span costs no allocation beyond the
/// one slot the registry gives it.
pub(super) struct SpanState {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent_span_id: [u8; 8],
    pub(super) flags: u32,
    pub(super) start: u64,
    pub(super) kind: SpanKind,
    pub(super) status: StatusCode,
    pub(super) status_message: (u16, u16),
    pub(super) name: Option<(u16, u16)>,
    pub(super) remote: Option<TraceContext>,
    pub(super) fields: ArrayVec<(&'static str, FieldValue), MAX_FIELDS>,
    pub(super) event_fields: ArrayVec<(&'static str, FieldValue), MAX_FIELDS>,
    pub(super) events: ArrayVec<KeptEvent, MAX_EVENTS>,
    pub(super) text: ArrayVec<u8, TEXT_BYTES>,
    pub(super) dropped_attributes: u32,
    pub(super) dropped_events: u32,
}

impl SpanState {
    /// Appends text to the arena; `None` (nothing kept) if it does not fit.
    pub(super) fn push_text(&mut self, s: &str) -> Option<(u16, u16)> {
        let start = self.text.len();
        self.text.try_extend_from_slice(s.as_bytes()).ok()?;
        Some((start as u16, s.len() as u16))
    }

    /// Formats `v` into the arena; `None` (the arena as it was) if it does
    /// not fit.
    pub(super) fn push_debug(&mut self, v: &dyn std::fmt::Debug) -> Option<(u16, u16)> {
        struct Arena<'a>(&'a mut ArrayVec<u8, TEXT_BYTES>);
        impl std::fmt::Write for Arena<'_> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                self.0
                    .try_extend_from_slice(s.as_bytes())
                    .map_err(|_| std::fmt::Error)
            }
        }
        let start = self.text.len();
        if write!(Arena(&mut self.text), "{v:?}").is_err() {
            self.text.truncate(start);
            return None;
        }
        Some((start as u16, (self.text.len() - start) as u16))
    }

    /// The text at `range` (always whole UTF-8: only whole `&str`s go in).
    pub(super) fn text(&self, (start, len): (u16, u16)) -> &str {
        let bytes = &self.text[start as usize..start as usize + len as usize];
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// Sets a span field, replacing an earlier value of the same name
    /// (`Span::record` of a declared field); counted as dropped past the
    /// bound.
    fn put(&mut self, name: &'static str, v: Option<FieldValue>) {
        let Some(v) = v else {
            self.dropped_attributes += 1;
            return;
        };
        if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = v;
        } else if self.fields.try_push((name, v)).is_err() {
            self.dropped_attributes += 1;
        }
    }

    pub(super) fn value(&self, v: FieldValue) -> Value<'_> {
        match v {
            FieldValue::I64(i) => Value::I64(i),
            FieldValue::F64(f) => Value::F64(f),
            FieldValue::Bool(b) => Value::Bool(b),
            FieldValue::Text(start, len) => Value::Str(self.text((start, len))),
        }
    }
}

/// Reads a span's fields into its state, taking the `otel.*`, `error` and
/// `traceparent` ones as the span's own properties.
pub(super) struct SpanVisitor<'a>(pub(super) &'a mut SpanState);

impl SpanVisitor<'_> {
    fn special(&mut self, name: &str, text: &str) -> bool {
        let s = &mut *self.0;
        match name {
            "otel.kind" | "span.kind" => {
                let is = |k: &str| text.eq_ignore_ascii_case(k);
                s.kind = if is("server") {
                    SpanKind::Server
                } else if is("client") {
                    SpanKind::Client
                } else if is("producer") {
                    SpanKind::Producer
                } else if is("consumer") {
                    SpanKind::Consumer
                } else if is("internal") {
                    SpanKind::Internal
                } else {
                    SpanKind::Unspecified
                };
            }
            "otel.status_code" => {
                s.status = if text.eq_ignore_ascii_case("ok") {
                    StatusCode::Ok
                } else if text.eq_ignore_ascii_case("error") {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                };
            }
            "otel.status_message" | "otel.status_description" => {
                s.status_message = s.push_text(text).unwrap_or((0, 0));
            }
            "otel.name" => s.name = s.push_text(text),
            "traceparent" => s.remote = TraceContext::parse(text),
            "error" => {
                s.status = StatusCode::Error;
                s.status_message = s.push_text(text).unwrap_or((0, 0));
            }
            _ => return false,
        }
        true
    }

    fn text(&mut self, f: &Field, v: &str) {
        if !self.special(f.name(), v) {
            let kept = self.0.push_text(v).map(|(a, b)| FieldValue::Text(a, b));
            self.0.put(f.name(), kept);
        }
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.put(f.name(), Some(FieldValue::I64(v)));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        let v = i64::try_from(v).map_or(FieldValue::F64(v as f64), FieldValue::I64);
        self.0.put(f.name(), Some(v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.put(f.name(), Some(FieldValue::F64(v)));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.put(f.name(), Some(FieldValue::Bool(v)));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.text(f, v);
    }
    fn record_error(&mut self, f: &Field, v: &(dyn std::error::Error + 'static)) {
        // Errors are rare: formatted once, then kept as text.
        self.text(f, &v.to_string());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let name = f.name();
        if matches!(
            name,
            "otel.kind"
                | "span.kind"
                | "otel.status_code"
                | "otel.status_message"
                | "otel.status_description"
                | "otel.name"
                | "traceparent"
                | "error"
        ) {
            self.text(f, &format!("{v:?}"));
            return;
        }
        let kept = self.0.push_debug(v).map(|(a, b)| FieldValue::Text(a, b));
        self.0.put(name, kept);
    }
}

/// Reads an event inside a span straight into the span's state: the
/// `message` as the event's name, the rest as its attributes.
pub(super) struct SpanEventVisitor<'a> {
    pub(super) state: &'a mut SpanState,
    pub(super) name: Option<(u16, u16)>,
}

impl SpanEventVisitor<'_> {
    fn put(&mut self, name: &'static str, v: Option<FieldValue>) {
        match v {
            Some(v) if self.state.event_fields.try_push((name, v)).is_ok() => {}
            _ => self.state.dropped_attributes += 1,
        }
    }
}

impl Visit for SpanEventVisitor<'_> {
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.put(f.name(), Some(FieldValue::I64(v)));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        let v = i64::try_from(v).map_or(FieldValue::F64(v as f64), FieldValue::I64);
        self.put(f.name(), Some(v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.put(f.name(), Some(FieldValue::F64(v)));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.put(f.name(), Some(FieldValue::Bool(v)));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        let kept = self.state.push_text(v);
        if f.name() == "message" {
            self.name = kept;
        } else {
            self.put(f.name(), kept.map(|(a, b)| FieldValue::Text(a, b)));
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let kept = self.state.push_debug(v);
        if f.name() == "message" {
            self.name = kept;
        } else {
            self.put(f.name(), kept.map(|(a, b)| FieldValue::Text(a, b)));
        }
    }
}
