//! Log records: the full OTLP `LogRecord`, borrowed, encoded on the hot path
//! like spans (size pass, then an exact write into the ring record).

use super::attribute_set::{encode_set, set_len, AttributeSet};
use super::proto3::*;
use super::value::{attributes_len, encode_attributes, KeyValue, Value};
use super::wire::{self, Writer};

/// OTLP `SeverityNumber`: 1-24 in six ranges of four (TRACE, DEBUG, INFO,
/// WARN, ERROR, FATAL); 0 is unspecified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Severity(pub u8);

impl Severity {
    /// Unspecified.
    pub const UNSPECIFIED: Severity = Severity(0);
    /// TRACE.
    pub const TRACE: Severity = Severity(1);
    /// DEBUG.
    pub const DEBUG: Severity = Severity(5);
    /// INFO.
    pub const INFO: Severity = Severity(9);
    /// WARN.
    pub const WARN: Severity = Severity(13);
    /// ERROR.
    pub const ERROR: Severity = Severity(17);
    /// FATAL.
    pub const FATAL: Severity = Severity(21);

    /// Whether the number is one OTLP defines (0..=24).
    pub fn is_valid(self) -> bool {
        self.0 <= 24
    }
}

/// One log record (OTLP `LogRecord`), borrowing its data.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogRecord<'a> {
    /// When the event occurred, ns since the Unix epoch (0: unknown).
    pub time_unix_nano: u64,
    /// When it was observed by the collection system.
    pub observed_time_unix_nano: u64,
    /// Severity number.
    pub severity_number: Severity,
    /// Severity as the source spells it ("WARNING", say).
    pub severity_text: &'a str,
    /// The body: any OTLP value (a string, usually).
    pub body: Option<Value<'a>>,
    /// Attributes encoded once (see [`AttributeSet`]); they come before
    /// `attributes` on the wire.
    pub attribute_set: Option<&'a AttributeSet>,
    /// Attributes.
    pub attributes: &'a [KeyValue<'a>],
    /// Attributes the caller discarded.
    pub dropped_attributes_count: u32,
    /// W3C trace flags.
    pub flags: u32,
    /// The trace it belongs to (all zero: none).
    pub trace_id: [u8; 16],
    /// The span it belongs to (all zero: none).
    pub span_id: [u8; 8],
    /// The event name, for log records that are events.
    pub event_name: &'a str,
}

// LogRecord fields (logs.proto).
mod field {
    pub const TIME: u32 = 1;
    pub const SEVERITY_NUMBER: u32 = 2;
    pub const SEVERITY_TEXT: u32 = 3;
    pub const BODY: u32 = 5;
    pub const ATTRIBUTES: u32 = 6;
    pub const DROPPED_ATTRIBUTES: u32 = 7;
    pub const FLAGS: u32 = 8;
    pub const TRACE_ID: u32 = 9;
    pub const SPAN_ID: u32 = 10;
    pub const OBSERVED_TIME: u32 = 11;
    pub const EVENT_NAME: u32 = 12;
}

impl LogRecord<'_> {
    /// Size in bytes of the encoded `LogRecord` message body.
    pub fn encoded_len(&self) -> usize {
        use field::*;
        fixed64_len(TIME, self.time_unix_nano)
            + uint_len(SEVERITY_NUMBER, self.severity_number.0 as u64)
            + str_len(SEVERITY_TEXT, self.severity_text)
            + self
                .body
                .map_or(0, |b| wire::len_field(BODY, b.encoded_len()))
            + set_len(self.attribute_set)
            + attributes_len(ATTRIBUTES, self.attributes)
            + uint_len(DROPPED_ATTRIBUTES, self.dropped_attributes_count as u64)
            + fixed32_len(FLAGS, self.flags)
            + id_len(TRACE_ID, &self.trace_id)
            + id_len(SPAN_ID, &self.span_id)
            + fixed64_len(OBSERVED_TIME, self.observed_time_unix_nano)
            + str_len(EVENT_NAME, self.event_name)
    }

    /// Writes the `LogRecord` message body into `buf`, which must be exactly
    /// [`LogRecord::encoded_len`] bytes long. Fields in tag order, as prost.
    pub fn encode(&self, buf: &mut [u8]) {
        let w = &mut Writer::new(buf);
        self.encode_fields(w);
        debug_assert_eq!(w.position(), self.encoded_len());
    }

    /// Writes the body through `w` (exactly sized, or scratch space).
    #[inline(always)]
    pub(crate) fn encode_fields(&self, w: &mut Writer<'_>) {
        use field::*;
        put_fixed64(w, TIME, self.time_unix_nano);
        put_uint(w, SEVERITY_NUMBER, self.severity_number.0 as u64);
        put_str(w, SEVERITY_TEXT, self.severity_text);
        if let Some(b) = &self.body {
            let body = w.begin_message(BODY);
            b.encode(w);
            w.end_message(body);
        }
        encode_set(w, ATTRIBUTES, self.attribute_set);
        encode_attributes(w, ATTRIBUTES, self.attributes);
        put_uint(w, DROPPED_ATTRIBUTES, self.dropped_attributes_count as u64);
        put_fixed32(w, FLAGS, self.flags);
        put_id(w, TRACE_ID, &self.trace_id);
        put_id(w, SPAN_ID, &self.span_id);
        put_fixed64(w, OBSERVED_TIME, self.observed_time_unix_nano);
        put_str(w, EVENT_NAME, self.event_name);
    }
}
