//! Attribute values: OTLP's `AnyValue` and `KeyValue`, borrowed so that the
//! hot path records them without allocating, plus owned forms for the
//! resource and scopes, which are configured once.

use super::wire::{self, Writer};

/// An attribute value (OTLP `AnyValue`), borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A UTF-8 string.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    I64(i64),
    /// A double.
    F64(f64),
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// An array of values.
    Array(&'a [Value<'a>]),
    /// A nested list of key-value pairs.
    KvList(&'a [KeyValue<'a>]),
}

/// An attribute: a key and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyValue<'a> {
    /// The attribute name.
    pub key: &'a str,
    /// The attribute value.
    pub value: Value<'a>,
}

impl<'a> KeyValue<'a> {
    /// Makes an attribute.
    #[inline]
    pub const fn new(key: &'a str, value: Value<'a>) -> Self {
        KeyValue { key, value }
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(s)
    }
}
impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}

// AnyValue fields.
const STRING_VALUE: u32 = 1;
const BOOL_VALUE: u32 = 2;
const INT_VALUE: u32 = 3;
const DOUBLE_VALUE: u32 = 4;
const ARRAY_VALUE: u32 = 5;
const KVLIST_VALUE: u32 = 6;
const BYTES_VALUE: u32 = 7;
// KeyValue, ArrayValue and KeyValueList fields.
const KV_KEY: u32 = 1;
const KV_VALUE: u32 = 2;
const LIST_VALUES: u32 = 1;

impl Value<'_> {
    /// Size of the `AnyValue` message body.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        match *self {
            Value::Str(s) => wire::len_field(STRING_VALUE, s.len()),
            Value::Bool(b) => wire::varint_field(BOOL_VALUE, b as u64),
            Value::I64(v) => wire::varint_field(INT_VALUE, v as u64),
            Value::F64(_) => wire::key_len(DOUBLE_VALUE) + 8,
            Value::Bytes(b) => wire::len_field(BYTES_VALUE, b.len()),
            Value::Array(_) | Value::KvList(_) => self.nested_len(),
        }
    }

    /// Writes the `AnyValue` message body.
    #[inline(always)]
    pub fn encode(&self, w: &mut Writer<'_>) {
        match *self {
            Value::Str(s) => w.bytes_field(STRING_VALUE, s.as_bytes()),
            Value::Bool(b) => w.varint_field(BOOL_VALUE, b as u64),
            Value::I64(v) => w.varint_field(INT_VALUE, v as u64),
            Value::F64(v) => w.fixed64_field(DOUBLE_VALUE, v.to_bits()),
            Value::Bytes(b) => w.bytes_field(BYTES_VALUE, b),
            Value::Array(_) | Value::KvList(_) => {
                // By value: see `Writer::long_length`.
                let taken = std::mem::replace(w, Writer::new(&mut []));
                *w = self.encode_nested(taken);
            }
        }
    }

    // Arrays and lists recurse; keeping them out of line lets the scalar
    // cases above inline into the attribute loops.
    #[inline(never)]
    fn nested_len(&self) -> usize {
        match *self {
            Value::Array(vs) => wire::len_field(ARRAY_VALUE, array_body_len(vs)),
            Value::KvList(kvs) => wire::len_field(KVLIST_VALUE, attributes_len(LIST_VALUES, kvs)),
            _ => 0,
        }
    }

    #[inline(never)]
    fn encode_nested<'b>(&self, mut writer: Writer<'b>) -> Writer<'b> {
        let w = &mut writer;
        match *self {
            Value::Array(vs) => {
                let array = w.begin_message(ARRAY_VALUE);
                for v in vs {
                    let item = w.begin_message(LIST_VALUES);
                    v.encode(w);
                    w.end_message(item);
                }
                w.end_message(array);
            }
            Value::KvList(kvs) => {
                let list = w.begin_message(KVLIST_VALUE);
                encode_attributes(w, LIST_VALUES, kvs);
                w.end_message(list);
            }
            _ => {}
        }
        writer
    }
}

fn array_body_len(vs: &[Value<'_>]) -> usize {
    vs.iter()
        .map(|v| wire::len_field(LIST_VALUES, v.encoded_len()))
        .sum()
}

impl KeyValue<'_> {
    #[inline]
    fn len_with_value(&self, value_len: usize) -> usize {
        let key = if self.key.is_empty() {
            0
        } else {
            wire::len_field(KV_KEY, self.key.len())
        };
        key + wire::len_field(KV_VALUE, value_len)
    }

    /// Size of the `KeyValue` message body.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        self.len_with_value(self.value.encoded_len())
    }
}

/// Size of a repeated `KeyValue` field numbered `field`.
#[inline]
pub fn attributes_len(field: u32, kvs: &[KeyValue<'_>]) -> usize {
    kvs.iter()
        .map(|kv| wire::len_field(field, kv.encoded_len()))
        .sum()
}

/// Writes a repeated `KeyValue` field numbered `field`. Lengths are
/// written after their bodies (see `Writer::begin_message`), so nothing is
/// sized twice.
#[inline(always)]
pub fn encode_attributes(w: &mut Writer<'_>, field: u32, kvs: &[KeyValue<'_>]) {
    for kv in kvs {
        let short = match kv.value {
            Value::Str(s) => w.short_string_pair(field, kv.key.as_bytes(), s.as_bytes()),
            Value::I64(v) => w.short_varint_pair(field, kv.key.as_bytes(), INT_VALUE, v as u64),
            Value::Bool(b) => w.short_varint_pair(field, kv.key.as_bytes(), BOOL_VALUE, b as u64),
            _ => false,
        };
        if short {
            continue;
        }
        let kv_start = w.begin_message(field);
        if !kv.key.is_empty() {
            w.bytes_field(KV_KEY, kv.key.as_bytes());
        }
        if let Value::Str(s) = kv.value {
            w.nested_bytes_field(KV_VALUE, STRING_VALUE, s.as_bytes());
        } else {
            let value_start = w.begin_message(KV_VALUE);
            kv.value.encode(w);
            w.end_message(value_start);
        }
        w.end_message(kv_start);
    }
}

/// An owned attribute value, for the resource and scopes.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    /// A UTF-8 string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    I64(i64),
    /// A double.
    F64(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An array of values.
    Array(Vec<OwnedValue>),
}

impl From<&str> for OwnedValue {
    fn from(s: &str) -> Self {
        OwnedValue::Str(s.to_owned())
    }
}
impl From<String> for OwnedValue {
    fn from(s: String) -> Self {
        OwnedValue::Str(s)
    }
}
impl From<bool> for OwnedValue {
    fn from(b: bool) -> Self {
        OwnedValue::Bool(b)
    }
}
impl From<i64> for OwnedValue {
    fn from(v: i64) -> Self {
        OwnedValue::I64(v)
    }
}
impl From<f64> for OwnedValue {
    fn from(v: f64) -> Self {
        OwnedValue::F64(v)
    }
}

impl OwnedValue {
    /// The borrowed form of a scalar value; `None` for arrays.
    pub(crate) fn scalar(&self) -> Option<Value<'_>> {
        Some(match self {
            OwnedValue::Str(s) => Value::Str(s),
            OwnedValue::Bool(b) => Value::Bool(*b),
            OwnedValue::I64(i) => Value::I64(*i),
            OwnedValue::F64(f) => Value::F64(*f),
            OwnedValue::Bytes(b) => Value::Bytes(b),
            OwnedValue::Array(_) => return None,
        })
    }

    fn array_body_len(items: &[OwnedValue]) -> usize {
        items
            .iter()
            .map(|v| wire::len_field(LIST_VALUES, v.encoded_len()))
            .sum()
    }

    /// Size of the `AnyValue` message body.
    pub fn encoded_len(&self) -> usize {
        match (self, self.scalar()) {
            (_, Some(v)) => v.encoded_len(),
            (OwnedValue::Array(items), None) => {
                wire::len_field(ARRAY_VALUE, Self::array_body_len(items))
            }
            _ => 0,
        }
    }

    /// Writes the `AnyValue` message body.
    pub fn encode(&self, w: &mut Writer<'_>) {
        match (self, self.scalar()) {
            (_, Some(v)) => v.encode(w),
            (OwnedValue::Array(items), None) => {
                w.message_header(ARRAY_VALUE, Self::array_body_len(items));
                for v in items {
                    w.message_header(LIST_VALUES, v.encoded_len());
                    v.encode(w);
                }
            }
            _ => {}
        }
    }
}

/// Encodes owned attributes as a repeated `KeyValue` field numbered `field`
/// and appends them to `out`. Used once per resource or scope, at setup.
pub fn encode_owned_attributes(out: &mut Vec<u8>, field: u32, attrs: &[(String, OwnedValue)]) {
    for (key, value) in attrs {
        let value_len = value.encoded_len();
        let key_len = if key.is_empty() {
            0
        } else {
            wire::len_field(KV_KEY, key.len())
        };
        let kv_len = key_len + wire::len_field(KV_VALUE, value_len);
        let start = out.len();
        out.resize(start + wire::len_field(field, kv_len), 0);
        let mut w = Writer::new(&mut out[start..]);
        w.message_header(field, kv_len);
        if !key.is_empty() {
            w.bytes_field(KV_KEY, key.as_bytes());
        }
        w.message_header(KV_VALUE, value_len);
        value.encode(&mut w);
    }
}
