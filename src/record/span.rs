//! Spans: the data a host records, borrowed so that recording allocates
//! nothing, and their encoding as the body of an OTLP `Span` message
//! (opentelemetry/proto/trace/v1/trace.proto).

use super::attribute_set::{encode_set, set_len, AttributeSet};
use super::proto3::*;
use super::value::{attributes_len, encode_attributes, KeyValue};
use super::wire::{self, Writer};

/// What a span represents (OTLP `Span.SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum SpanKind {
    /// Unspecified.
    #[default]
    Unspecified = 0,
    /// Internal operation.
    Internal = 1,
    /// Server side of a request.
    Server = 2,
    /// Client side of a request.
    Client = 3,
    /// Producer of a message.
    Producer = 4,
    /// Consumer of a message.
    Consumer = 5,
}

/// Status code of a span (OTLP `Status.StatusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum StatusCode {
    /// No status set.
    #[default]
    Unset = 0,
    /// The operation succeeded.
    Ok = 1,
    /// The operation failed.
    Error = 2,
}

/// Status of a span: a code and an optional message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status<'a> {
    /// The code.
    pub code: StatusCode,
    /// A developer-facing message, usually set only with `Error`.
    pub message: &'a str,
}

/// A time-stamped event inside a span.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Event<'a> {
    /// When it happened, in nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// Its name.
    pub name: &'a str,
    /// Its attributes.
    pub attributes: &'a [KeyValue<'a>],
    /// Attributes the caller discarded before recording.
    pub dropped_attributes_count: u32,
}

/// A link from a span to another span.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Link<'a> {
    /// Trace id of the linked span.
    pub trace_id: [u8; 16],
    /// Span id of the linked span.
    pub span_id: [u8; 8],
    /// W3C trace state of the linked span.
    pub trace_state: &'a str,
    /// Attributes of the link.
    pub attributes: &'a [KeyValue<'a>],
    /// Attributes the caller discarded before recording.
    pub dropped_attributes_count: u32,
    /// W3C trace flags and OTLP span flags of the link.
    pub flags: u32,
}

/// A finished span, as everything OTLP's `Span` carries. All data is borrowed:
/// build it on the stack and hand it to `record_span`.
///
/// An all-zero `parent_span_id` means "no parent" (a root span).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Span<'a> {
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
    /// Operation name.
    pub name: &'a str,
    /// Kind.
    pub kind: SpanKind,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// Attributes encoded once (see [`AttributeSet`]); they come before
    /// `attributes` on the wire.
    pub attribute_set: Option<&'a AttributeSet>,
    /// Attributes.
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

// Span fields (trace.proto).
mod field {
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const TRACE_STATE: u32 = 3;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START: u32 = 7;
    pub const END: u32 = 8;
    pub const ATTRIBUTES: u32 = 9;
    pub const DROPPED_ATTRIBUTES: u32 = 10;
    pub const EVENTS: u32 = 11;
    pub const DROPPED_EVENTS: u32 = 12;
    pub const LINKS: u32 = 13;
    pub const DROPPED_LINKS: u32 = 14;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;
    // Event.
    pub const EVENT_TIME: u32 = 1;
    pub const EVENT_NAME: u32 = 2;
    pub const EVENT_ATTRIBUTES: u32 = 3;
    pub const EVENT_DROPPED: u32 = 4;
    // Link.
    pub const LINK_TRACE_ID: u32 = 1;
    pub const LINK_SPAN_ID: u32 = 2;
    pub const LINK_TRACE_STATE: u32 = 3;
    pub const LINK_ATTRIBUTES: u32 = 4;
    pub const LINK_DROPPED: u32 = 5;
    pub const LINK_FLAGS: u32 = 6;
    // Status.
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
}

impl Event<'_> {
    fn encoded_len(&self) -> usize {
        use field::*;
        fixed64_len(EVENT_TIME, self.time_unix_nano)
            + str_len(EVENT_NAME, self.name)
            + attributes_len(EVENT_ATTRIBUTES, self.attributes)
            + uint_len(EVENT_DROPPED, self.dropped_attributes_count as u64)
    }

    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        use field::*;
        put_fixed64(w, EVENT_TIME, self.time_unix_nano);
        put_str(w, EVENT_NAME, self.name);
        encode_attributes(w, EVENT_ATTRIBUTES, self.attributes);
        put_uint(w, EVENT_DROPPED, self.dropped_attributes_count as u64);
    }
}

impl Link<'_> {
    fn encoded_len(&self) -> usize {
        use field::*;
        id_len(LINK_TRACE_ID, &self.trace_id)
            + id_len(LINK_SPAN_ID, &self.span_id)
            + str_len(LINK_TRACE_STATE, self.trace_state)
            + attributes_len(LINK_ATTRIBUTES, self.attributes)
            + uint_len(LINK_DROPPED, self.dropped_attributes_count as u64)
            + fixed32_len(LINK_FLAGS, self.flags)
    }

    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        use field::*;
        put_id(w, LINK_TRACE_ID, &self.trace_id);
        put_id(w, LINK_SPAN_ID, &self.span_id);
        put_str(w, LINK_TRACE_STATE, self.trace_state);
        encode_attributes(w, LINK_ATTRIBUTES, self.attributes);
        put_uint(w, LINK_DROPPED, self.dropped_attributes_count as u64);
        put_fixed32(w, LINK_FLAGS, self.flags);
    }
}

impl Status<'_> {
    fn encoded_len(&self) -> usize {
        use field::*;
        str_len(STATUS_MESSAGE, self.message) + uint_len(STATUS_CODE, self.code as u64)
    }
}

/// Where a span's name and kind come from: its own fields, or bytes a
/// template encoded once.
#[derive(Clone, Copy)]
pub(crate) enum Head<'a> {
    /// The span's `name` and `kind`.
    Fields,
    /// Fields 5 and 6, already encoded.
    Encoded(&'a [u8]),
}

/// Size of fields 5 and 6 (name, kind).
pub(crate) fn head_len(name: &str, kind: SpanKind) -> usize {
    str_len(field::NAME, name) + uint_len(field::KIND, kind as u64)
}

/// Writes fields 5 and 6 (name, kind).
#[inline(always)]
pub(crate) fn encode_head(w: &mut Writer<'_>, name: &str, kind: SpanKind) {
    put_str(w, field::NAME, name);
    put_uint(w, field::KIND, kind as u64);
}

impl Span<'_> {
    /// Whether the span carries the ids OTLP requires of it: a trace id and
    /// a span id, neither all zero (an all-zero parent is a root). A
    /// pipeline refuses a span without them as `RecordError::Invalid`:
    /// receivers that check refuse a whole request for one such span.
    #[inline]
    pub fn has_ids(&self) -> bool {
        !zero_id(&self.trace_id) && !zero_id(&self.span_id)
    }

    /// Size in bytes of the encoded `Span` message body.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        self.len_with(head_len(self.name, self.kind), set_len(self.attribute_set))
    }

    /// Writes the `Span` message body into `buf`, which must be exactly
    /// [`Span::encoded_len`] bytes long.
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) {
        debug_assert_eq!(buf.len(), self.encoded_len());
        self.encode_with(buf, Head::Fields, self.attribute_set);
    }

    /// Size of the body with a head of `head` bytes and a set of `set`
    /// bytes in place of the span's own.
    #[inline]
    pub(crate) fn len_with(&self, head: usize, set: usize) -> usize {
        use field::*;
        let status = self.status.encoded_len();
        id_len(TRACE_ID, &self.trace_id)
            + id_len(SPAN_ID, &self.span_id)
            + str_len(TRACE_STATE, self.trace_state)
            + id_len(PARENT_SPAN_ID, &self.parent_span_id)
            + head
            + fixed64_len(START, self.start_time_unix_nano)
            + fixed64_len(END, self.end_time_unix_nano)
            + set
            + attributes_len(ATTRIBUTES, self.attributes)
            + uint_len(DROPPED_ATTRIBUTES, self.dropped_attributes_count as u64)
            + self
                .events
                .iter()
                .map(|e| wire::len_field(EVENTS, e.encoded_len()))
                .sum::<usize>()
            + uint_len(DROPPED_EVENTS, self.dropped_events_count as u64)
            + self
                .links
                .iter()
                .map(|l| wire::len_field(LINKS, l.encoded_len()))
                .sum::<usize>()
            + uint_len(DROPPED_LINKS, self.dropped_links_count as u64)
            + if status == 0 {
                0
            } else {
                wire::len_field(STATUS, status)
            }
            + fixed32_len(FLAGS, self.flags)
    }

    /// Writes the body with `head` and `set` in place of the span's name,
    /// kind and set; `buf` is exactly as long as `len_with` said.
    #[inline]
    pub(crate) fn encode_with(&self, buf: &mut [u8], head: Head<'_>, set: Option<&AttributeSet>) {
        let w = &mut Writer::new(buf);
        self.encode_fields(w, head, set);
        debug_assert!(w.is_full(), "the size pass and the encoder disagree");
    }

    /// Writes the body with `head` and `set` in place of the span's name,
    /// kind and set through `w` (exactly sized, or scratch space).
    #[inline(always)]
    pub(crate) fn encode_fields(
        &self,
        w: &mut Writer<'_>,
        head: Head<'_>,
        set: Option<&AttributeSet>,
    ) {
        use field::*;
        put_id(w, TRACE_ID, &self.trace_id);
        put_id(w, SPAN_ID, &self.span_id);
        put_str(w, TRACE_STATE, self.trace_state);
        put_id(w, PARENT_SPAN_ID, &self.parent_span_id);
        match head {
            Head::Fields => encode_head(w, self.name, self.kind),
            Head::Encoded(bytes) => w.raw(bytes),
        }
        put_fixed64(w, START, self.start_time_unix_nano);
        put_fixed64(w, END, self.end_time_unix_nano);
        encode_set(w, ATTRIBUTES, set);
        self.encode_rest(w);
    }

    /// Writes the fields after the attribute set (field 9 onwards: the
    /// span's own attributes, events, links, status, flags).
    #[inline(always)]
    pub(crate) fn encode_rest(&self, w: &mut Writer<'_>) {
        use field::*;
        encode_attributes(w, ATTRIBUTES, self.attributes);
        put_uint(w, DROPPED_ATTRIBUTES, self.dropped_attributes_count as u64);
        for e in self.events {
            let event = w.begin_message(EVENTS);
            e.encode(w);
            w.end_message(event);
        }
        put_uint(w, DROPPED_EVENTS, self.dropped_events_count as u64);
        for l in self.links {
            let link = w.begin_message(LINKS);
            l.encode(w);
            w.end_message(link);
        }
        put_uint(w, DROPPED_LINKS, self.dropped_links_count as u64);
        if self.status.message.is_empty() {
            // A code alone, the common case: four bytes, one write.
            if self.status.code != StatusCode::Unset {
                w.raw(&[
                    (STATUS << 3 | wire::LEN) as u8,
                    2,
                    (STATUS_CODE << 3 | wire::VARINT) as u8,
                    self.status.code as u8,
                ]);
            }
        } else {
            let status = w.begin_message(STATUS);
            put_str(w, STATUS_MESSAGE, self.status.message);
            put_uint(w, STATUS_CODE, self.status.code as u64);
            w.end_message(status);
        }
        // Field 16 last: prost writes fields in tag order, and so do we, so
        // that our bytes are identical to prost's.
        put_fixed32(w, FLAGS, self.flags);
    }
}
