//! Span templates: the parts of a span that most spans of one operation
//! share (name, kind, static attributes), encoded once, and the per-span
//! rest. Recording through a template writes ids, times, status and the few
//! dynamic attributes, and copies the template's bytes for everything else;
//! the result is byte for byte the span the plain encoder writes for the
//! same data.

use super::attribute_set::AttributeSet;
use super::span::{encode_head, head_len, Event, Head, Link, Span, SpanKind, Status};
use super::value::KeyValue;
use super::wire::Writer;

/// Name, kind and static attributes of a kind of span, encoded once.
#[derive(Clone, PartialEq, Eq)]
pub struct SpanShape {
    /// Fields 5 and 6 (name, kind) as they go on the wire.
    head: Box<[u8]>,
    /// The static attributes; a span's own attributes follow them.
    attributes: AttributeSet,
    /// Fields 1 to 9 of the common span (three ids, no trace state, both
    /// times set) with stand-in values for its ids and times: the keys,
    /// lengths, head and attribute set are copied with them in one write,
    /// and the ids and times filled in at fixed places (`SKELETON_*`).
    skeleton: Box<[u8]>,
}

/// Where the trace, span and parent span ids sit in a skeleton.
const SKELETON_TRACE_ID: usize = 2;
const SKELETON_SPAN_ID: usize = 20;
const SKELETON_PARENT_SPAN_ID: usize = 30;
/// Bytes of the ids' fields, before the head.
const SKELETON_IDS: usize = 38;

impl SpanShape {
    /// Encodes `name`, `kind` and `attributes` once.
    pub fn new(name: &str, kind: SpanKind, attributes: &[KeyValue<'_>]) -> SpanShape {
        let mut head = vec![0u8; head_len(name, kind)].into_boxed_slice();
        encode_head(&mut Writer::new(&mut head), name, kind);
        let attributes = AttributeSet::new(attributes);
        // The encoder itself writes the skeleton: a span with every id byte
        // and both times set (stand-ins, overwritten per span) and nothing
        // after the attribute set.
        let stand_in = Span {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_span_id: [1; 8],
            start_time_unix_nano: 1,
            end_time_unix_nano: 1,
            ..Span::default()
        };
        let mut skeleton = vec![0u8; stand_in.len_with(head.len(), attributes.encoded_len())];
        stand_in.encode_with(&mut skeleton, Head::Encoded(&head), Some(&attributes));
        debug_assert_eq!(skeleton[SKELETON_IDS..][..head.len()], head[..]);
        SpanShape {
            head,
            attributes,
            skeleton: skeleton.into_boxed_slice(),
        }
    }

    /// The static attributes.
    pub fn attributes(&self) -> &AttributeSet {
        &self.attributes
    }

    /// Size of the `Span` body `span` makes with this shape.
    #[inline]
    pub fn encoded_len(&self, span: &TemplateSpan<'_>) -> usize {
        self.len_of(&span.as_span())
    }

    /// Writes the `Span` body into `buf`, exactly [`SpanShape::encoded_len`]
    /// bytes long.
    #[inline]
    pub fn encode(&self, span: &TemplateSpan<'_>, buf: &mut [u8]) {
        self.encode_span(&span.as_span(), buf)
    }

    /// [`SpanShape::encoded_len`] of a span already in its per-span form
    /// (`TemplateSpan::as_span`), for callers that size and encode it.
    #[inline]
    pub(crate) fn len_of(&self, span: &Span<'_>) -> usize {
        span.len_with(self.head.len(), self.attributes.encoded_len())
    }

    /// [`SpanShape::encode`] of a span in its per-span form.
    #[inline]
    pub(crate) fn encode_span(&self, span: &Span<'_>, buf: &mut [u8]) {
        let w = &mut Writer::new(buf);
        self.encode_fields(span, w);
        debug_assert!(w.is_full(), "the size pass and the encoder disagree");
    }

    /// The same through a writer (exactly sized, or scratch space).
    #[inline(always)]
    pub(crate) fn encode_fields(&self, span: &Span<'_>, w: &mut Writer<'_>) {
        let common = span.trace_state.is_empty()
            && span.trace_id != [0; 16]
            && span.span_id != [0; 8]
            && span.parent_span_id != [0; 8]
            && span.start_time_unix_nano != 0
            && span.end_time_unix_nano != 0;
        if !common {
            // A root span, a trace state, a time left unset: field by field.
            span.encode_fields(w, Head::Encoded(&self.head), Some(&self.attributes));
            return;
        }
        let times = SKELETON_IDS + self.head.len();
        w.raw_then(&self.skeleton, |dst| {
            let Some((ids, rest)) = dst.split_first_chunk_mut::<SKELETON_IDS>() else {
                return;
            };
            ids[SKELETON_TRACE_ID..][..16].copy_from_slice(&span.trace_id);
            ids[SKELETON_SPAN_ID..][..8].copy_from_slice(&span.span_id);
            ids[SKELETON_PARENT_SPAN_ID..][..8].copy_from_slice(&span.parent_span_id);
            let Some(t) = rest
                .get_mut(times - SKELETON_IDS..)
                .and_then(|r| r.first_chunk_mut::<18>())
            else {
                return;
            };
            t[1..9].copy_from_slice(&span.start_time_unix_nano.to_le_bytes());
            t[10..].copy_from_slice(&span.end_time_unix_nano.to_le_bytes());
        });
        span.encode_rest(w);
    }
}

impl std::fmt::Debug for SpanShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanShape")
            .field("head_bytes", &self.head.len())
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// What one span recorded through a template adds to it: everything of a
/// [`Span`] but its name, kind and static attributes. `attributes` are the
/// span's dynamic ones, written after the template's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TemplateSpan<'a> {
    /// Trace id (16 bytes, not all zero).
    pub trace_id: [u8; 16],
    /// Span id (8 bytes, not all zero).
    pub span_id: [u8; 8],
    /// W3C trace state.
    pub trace_state: &'a str,
    /// Parent span id; all zero for a root span.
    pub parent_span_id: [u8; 8],
    /// W3C trace flags and OTLP span flags.
    pub flags: u32,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// Dynamic attributes, after the template's.
    pub attributes: &'a [KeyValue<'a>],
    /// Attributes the caller discarded before recording.
    pub dropped_attributes_count: u32,
    /// Events.
    pub events: &'a [Event<'a>],
    /// Events the caller discarded before recording.
    pub dropped_events_count: u32,
    /// Links.
    pub links: &'a [Link<'a>],
    /// Links the caller discarded before recording.
    pub dropped_links_count: u32,
    /// Status.
    pub status: Status<'a>,
}

impl<'a> From<&Span<'a>> for TemplateSpan<'a> {
    /// A span's per-span fields; its name, kind and attribute set are left
    /// out (a template supplies them).
    fn from(s: &Span<'a>) -> Self {
        TemplateSpan {
            trace_id: s.trace_id,
            span_id: s.span_id,
            trace_state: s.trace_state,
            parent_span_id: s.parent_span_id,
            flags: s.flags,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: s.attributes,
            dropped_attributes_count: s.dropped_attributes_count,
            events: s.events,
            dropped_events_count: s.dropped_events_count,
            links: s.links,
            dropped_links_count: s.dropped_links_count,
            status: s.status,
        }
    }
}

impl<'a> TemplateSpan<'a> {
    /// The span without name, kind and set (the shape supplies them).
    #[inline]
    pub(crate) fn as_span(&self) -> Span<'a> {
        Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            trace_state: self.trace_state,
            parent_span_id: self.parent_span_id,
            flags: self.flags,
            name: "",
            kind: SpanKind::Unspecified,
            start_time_unix_nano: self.start_time_unix_nano,
            end_time_unix_nano: self.end_time_unix_nano,
            attribute_set: None,
            attributes: self.attributes,
            dropped_attributes_count: self.dropped_attributes_count,
            events: self.events,
            dropped_events_count: self.dropped_events_count,
            links: self.links,
            dropped_links_count: self.dropped_links_count,
            status: self.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{StatusCode, Value};

    #[test]
    fn a_templated_span_encodes_as_the_plain_span_with_the_same_data() {
        let statics = [
            KeyValue::new("http.request.method", Value::Str("GET")),
            KeyValue::new("http.response.status_code", Value::I64(200)),
        ];
        let dynamic = [KeyValue::new("app.item_id", Value::I64(42))];
        let all = [statics[0], statics[1], dynamic[0]];
        let ev_attrs = [KeyValue::new("cache.key", Value::I64(7))];
        let events = [Event {
            time_unix_nano: 5,
            name: "cache.miss",
            attributes: &ev_attrs,
            dropped_attributes_count: 0,
        }];
        let t = TemplateSpan {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: [3; 8],
            flags: 0x101,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: &dynamic,
            events: &events,
            status: Status {
                code: StatusCode::Error,
                message: "boom",
            },
            ..Default::default()
        };
        let plain = Span {
            name: "GET /items/{id}",
            kind: SpanKind::Server,
            attributes: &all,
            ..t.as_span()
        };
        let shape = SpanShape::new("GET /items/{id}", SpanKind::Server, &statics);
        let mut want = vec![0u8; plain.encoded_len()];
        plain.encode(&mut want);
        let mut got = vec![0u8; shape.encoded_len(&t)];
        shape.encode(&t, &mut got);
        assert_eq!(got, want);
        // A template with nothing static: the span's own fields only.
        let bare = SpanShape::new("", SpanKind::Unspecified, &[]);
        let plain = Span { ..t.as_span() };
        let mut want = vec![0u8; plain.encoded_len()];
        plain.encode(&mut want);
        let mut got = vec![0u8; bare.encoded_len(&t)];
        bare.encode(&t, &mut got);
        assert_eq!(got, want);
        // Spans off the common layout (a root span, a trace state, a time
        // or an id left unset) take the field-by-field path: the same bytes.
        let variants = [
            TemplateSpan {
                parent_span_id: [0; 8],
                ..t
            },
            TemplateSpan {
                trace_state: "vendor=1",
                ..t
            },
            TemplateSpan {
                start_time_unix_nano: 0,
                ..t
            },
            TemplateSpan {
                end_time_unix_nano: 0,
                ..t
            },
            TemplateSpan {
                span_id: [0; 8],
                ..t
            },
            TemplateSpan {
                trace_id: [0; 16],
                ..t
            },
        ];
        for v in variants {
            let plain = Span {
                name: "GET /items/{id}",
                kind: SpanKind::Server,
                attributes: &all,
                ..v.as_span()
            };
            let mut want = vec![0u8; plain.encoded_len()];
            plain.encode(&mut want);
            let mut got = vec![0u8; shape.encoded_len(&v)];
            shape.encode(&v, &mut got);
            assert_eq!(got, want, "{v:?}");
        }
    }
}
