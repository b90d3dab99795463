//! The OpenTelemetry API's `AnyValue` (a log record's body and attributes)
//! as otlpflow values, lists and maps included: OTLP's array and kvlist
//! values, as the SDK's own exporter sends them.
//!
//! otlpflow's values borrow their elements (`Value::Array(&[Value])`), so a
//! record's nested values are laid out in two buffers made for it: a first
//! pass counts the elements and entries (and writes the text of anything
//! nested too deep), a second fills the buffers from their ends, each list
//! taking its slots before its elements' own, so that every slice handed out
//! is disjoint from what is still being filled.

use opentelemetry::logs::AnyValue;

use crate::record::{KeyValue, Value};

/// The deepest nesting sent as values (the receiver's protobuf decoder
/// stops at 100); anything below it goes as its text.
const MAX_DEPTH: usize = 16;

/// What a record's values need: the number of array elements and map
/// entries, and the text of what is nested too deep, in visiting order.
#[derive(Default)]
pub(super) struct Layout {
    values: usize,
    entries: usize,
    texts: Vec<String>,
}

impl Layout {
    /// Counts what `v` needs; call it for each value in the order
    /// [`Values::value`] will take them.
    pub(super) fn visit(&mut self, v: &AnyValue) {
        self.visit_at(v, 0);
    }

    fn visit_at(&mut self, v: &AnyValue, depth: usize) {
        match v {
            AnyValue::ListAny(items) if depth < MAX_DEPTH => {
                self.values += items.len();
                for item in items.iter() {
                    self.visit_at(item, depth + 1);
                }
            }
            AnyValue::Map(map) if depth < MAX_DEPTH => {
                self.entries += map.len();
                for item in map.values() {
                    self.visit_at(item, depth + 1);
                }
            }
            AnyValue::Int(_)
            | AnyValue::Double(_)
            | AnyValue::String(_)
            | AnyValue::Boolean(_)
            | AnyValue::Bytes(_) => {}
            other => self.texts.push(format!("{other:?}")),
        }
    }

    /// The buffers the values are built in.
    pub(super) fn buffers<'x>(&self) -> (Vec<Value<'x>>, Vec<KeyValue<'x>>) {
        (
            vec![Value::Bool(false); self.values],
            vec![KeyValue::new("", Value::Bool(false)); self.entries],
        )
    }

    /// The texts, for [`Values`] to hand out.
    pub(super) fn texts(&self) -> &[String] {
        &self.texts
    }
}

/// Builds values in the buffers of a [`Layout`].
pub(super) struct Values<'b> {
    values: &'b mut [Value<'b>],
    entries: &'b mut [KeyValue<'b>],
    texts: std::slice::Iter<'b, String>,
}

impl<'b> Values<'b> {
    pub(super) fn new(
        values: &'b mut [Value<'b>],
        entries: &'b mut [KeyValue<'b>],
        texts: &'b [String],
    ) -> Values<'b> {
        Values {
            values,
            entries,
            texts: texts.iter(),
        }
    }

    /// `v` as a value, in the order the layout visited them.
    pub(super) fn value(&mut self, v: &'b AnyValue) -> Value<'b> {
        self.value_at(v, 0)
    }

    fn value_at(&mut self, v: &'b AnyValue, depth: usize) -> Value<'b> {
        match v {
            AnyValue::Int(i) => Value::I64(*i),
            AnyValue::Double(f) => Value::F64(*f),
            AnyValue::String(s) => Value::Str(s.as_str()),
            AnyValue::Boolean(b) => Value::Bool(*b),
            AnyValue::Bytes(b) => Value::Bytes(b),
            AnyValue::ListAny(items) if depth < MAX_DEPTH => {
                let slots = take_last(&mut self.values, items.len());
                for (slot, item) in slots.iter_mut().zip(items.iter()) {
                    *slot = self.value_at(item, depth + 1);
                }
                Value::Array(slots)
            }
            AnyValue::Map(map) if depth < MAX_DEPTH => {
                let slots = take_last(&mut self.entries, map.len());
                for (slot, (key, item)) in slots.iter_mut().zip(map.iter()) {
                    *slot = KeyValue::new(key.as_str(), self.value_at(item, depth + 1));
                }
                Value::KvList(slots)
            }
            // Too deep (or a kind added to the API later): its text, which
            // the layout wrote in the same order.
            _ => Value::Str(self.texts.next().map_or("", String::as_str)),
        }
    }
}

/// Splits the last `n` slots off `buf` (the layout counted them, so they
/// are there; should they not be, the list is cut short rather than
/// panicking).
fn take_last<'b, T>(buf: &mut &'b mut [T], n: usize) -> &'b mut [T] {
    let all = std::mem::take(buf);
    let (rest, last) = all.split_at_mut(all.len() - n.min(all.len()));
    *buf = rest;
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn converted(v: &AnyValue, check: impl FnOnce(Value<'_>)) {
        let mut layout = Layout::default();
        layout.visit(v);
        let (mut values, mut entries) = layout.buffers();
        let mut b = Values::new(&mut values, &mut entries, layout.texts());
        check(b.value(v));
    }

    #[test]
    fn lists_and_maps_nest_as_arrays_and_kvlists() {
        let inner = AnyValue::ListAny(Box::new(vec![AnyValue::Int(1), AnyValue::Boolean(true)]));
        let map = AnyValue::Map(Box::new(HashMap::from([
            ("a".into(), inner.clone()),
            ("b".into(), AnyValue::String("x".into())),
        ])));
        let v = AnyValue::ListAny(Box::new(vec![map, AnyValue::Double(0.5), inner]));
        converted(&v, |value| {
            let Value::Array([Value::KvList(kvs), Value::F64(f), Value::Array(last)]) = value
            else {
                panic!("{value:?}")
            };
            assert_eq!(*f, 0.5);
            assert_eq!(last, &[Value::I64(1), Value::Bool(true)]);
            let mut kvs = kvs.to_vec();
            kvs.sort_by_key(|kv| kv.key);
            assert_eq!(kvs[0].key, "a");
            assert_eq!(
                kvs[0].value,
                Value::Array(&[Value::I64(1), Value::Bool(true)])
            );
            assert_eq!((kvs[1].key, kvs[1].value), ("b", Value::Str("x")));
        });
    }

    #[test]
    fn nesting_past_the_bound_goes_as_text() {
        let mut v = AnyValue::Int(7);
        for _ in 0..MAX_DEPTH + 3 {
            v = AnyValue::ListAny(Box::new(vec![v]));
        }
        converted(&v, |mut value| {
            for _ in 0..MAX_DEPTH {
                let Value::Array([inner]) = value else {
                    panic!("{value:?}")
                };
                value = *inner;
            }
            let Value::Str(text) = value else {
                panic!("{value:?}")
            };
            assert_eq!(text, "ListAny([ListAny([ListAny([Int(7)])])])");
        });
    }
}
