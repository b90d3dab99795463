//! The C ABI's record structs built from fuzz bytes, as a careless C
//! caller could fill them: any kind, status, severity and metric type
//! numbers, strings that are not UTF-8, NULL pointers with lengths, more
//! attributes than allowed, nested arrays. Every pointer still points at
//! real memory (a dangling pointer is a caller bug no library can catch).
//! Properties: no panic across the boundary (the result is never
//! `OTLPFLOW_RESULT_PANIC`), no crash, no leak.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otlpflow_ffi::*;

#[path = "shared/pipeline.rs"]
mod shared;
use shared::pipeline;

/// Reads the fuzz input as a stream of choices.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) << 32 | self.u32() as u64
    }
    /// A string: a slice of the input (any bytes), empty, or NULL with a
    /// length.
    fn str(&mut self) -> otlpflow_str {
        let n = (self.u8() % 48) as usize;
        match self.u8() % 8 {
            0 => otlpflow_str {
                ptr: std::ptr::null(),
                len: n,
            },
            1 => otlpflow_str {
                ptr: std::ptr::null(),
                len: 0,
            },
            _ => {
                let n = n.min(self.0.len());
                let (s, rest) = self.0.split_at(n);
                self.0 = rest;
                otlpflow_str {
                    ptr: s.as_ptr().cast(),
                    len: n,
                }
            }
        }
    }
}

/// Values and attributes, kept alive for the call.
#[derive(Default)]
struct Pools {
    values: Vec<Vec<otlpflow_value>>,
    attrs: Vec<Vec<otlpflow_attribute>>,
}

fn value(b: &mut Bytes, pools: &mut Pools, depth: u32) -> otlpflow_value {
    let kind = match b.u8() % 10 {
        k @ 0..=6 => k as u32,
        _ => b.u32(),
    };
    let mut v = otlpflow_value {
        kind,
        str: b.str(),
        i64: b.u64() as i64,
        f64: f64::from_bits(b.u64()),
        boolean: b.u8() & 1 == 1,
        array: std::ptr::null(),
        array_len: 0,
    };
    if kind == otlpflow_value_kind::Array as u32 {
        let n = (b.u8() % 8) as usize;
        let elems: Vec<otlpflow_value> = (0..n)
            .map(|_| {
                if depth < 2 {
                    value(b, pools, depth + 1)
                } else {
                    v
                }
            })
            .collect();
        v.array = elems.as_ptr();
        v.array_len = if b.u8() % 16 == 0 { n + 1_000_000 } else { n };
        if v.array_len > n {
            // A length past the array would be a caller bug: keep it honest,
            // but let NULL with a length through.
            v.array = std::ptr::null();
        }
        pools.values.push(elems);
    }
    v
}

fn attributes(b: &mut Bytes, pools: &mut Pools) -> (*const otlpflow_attribute, usize) {
    let n = match b.u8() % 16 {
        0 => 130,
        k => (k % 6) as usize,
    };
    let list: Vec<otlpflow_attribute> = (0..n)
        .map(|_| otlpflow_attribute {
            key: b.str(),
            value: value(b, pools, 0),
        })
        .collect();
    let out = (list.as_ptr(), list.len());
    pools.attrs.push(list);
    if b.u8() % 32 == 0 {
        (std::ptr::null(), out.1.max(1))
    } else {
        out
    }
}

fuzz_target!(|data: &[u8]| {
    let h = pipeline();
    let mut b = Bytes(data);
    let mut pools = Pools::default();
    let r = match b.u8() % 3 {
        0 => {
            let (attributes, attributes_len) = attributes(&mut b, &mut pools);
            let span = otlpflow_span {
                trace_id: [b.u8(); 16],
                span_id: [b.u8(); 8],
                parent_span_id: [b.u8(); 8],
                trace_state: b.str(),
                flags: b.u32(),
                name: b.str(),
                kind: b.u32() % 8,
                start_time_unix_nano: b.u64(),
                end_time_unix_nano: b.u64(),
                attributes,
                attributes_len,
                dropped_attributes_count: b.u32(),
                events: std::ptr::null(),
                events_len: 0,
                dropped_events_count: 0,
                links: std::ptr::null(),
                links_len: 0,
                dropped_links_count: 0,
                status_code: b.u32() % 4,
                status_message: b.str(),
            };
            otlpflow_pipeline_record_span(h.0, &h.1, &span)
        }
        1 => {
            let (attributes, attributes_len) = attributes(&mut b, &mut pools);
            let log = otlpflow_log_record {
                time_unix_nano: b.u64(),
                observed_time_unix_nano: b.u64(),
                severity_number: b.u32() % 32,
                severity_text: b.str(),
                has_body: b.u8() & 1 == 1,
                body: value(&mut b, &mut pools, 0),
                attributes,
                attributes_len,
                dropped_attributes_count: b.u32(),
                flags: b.u32(),
                trace_id: [b.u8(); 16],
                span_id: [b.u8(); 8],
                event_name: b.str(),
            };
            otlpflow_pipeline_record_log(h.0, &h.1, &log)
        }
        _ => {
            let (attributes, attributes_len) = attributes(&mut b, &mut pools);
            let bounds: Vec<f64> = (0..b.u8() % 6).map(|_| f64::from_bits(b.u64())).collect();
            let counts: Vec<u64> = (0..b.u8() % 7).map(|_| b.u64() % 100).collect();
            let point = otlpflow_metric_point {
                name: b.str(),
                description: b.str(),
                unit: b.str(),
                attributes,
                attributes_len,
                start_time_unix_nano: b.u64(),
                time_unix_nano: b.u64(),
                flags: b.u32(),
                type_: b.u32() % 5,
                temporality: b.u32() % 4,
                monotonic: b.u8() & 1 == 1,
                is_double: b.u8() & 1 == 1,
                as_int: b.u64() as i64,
                as_double: f64::from_bits(b.u64()),
                count: b.u64() % 1000,
                has_sum: b.u8() & 1 == 1,
                sum: f64::from_bits(b.u64()),
                has_min_max: b.u8() & 1 == 1,
                min: f64::from_bits(b.u64()),
                max: f64::from_bits(b.u64()),
                bounds: bounds.as_ptr(),
                bounds_len: bounds.len(),
                bucket_counts: counts.as_ptr(),
                bucket_counts_len: counts.len(),
            };
            otlpflow_pipeline_record_metric(h.0, &h.1, &point)
        }
    };
    assert_ne!(r, otlpflow_result::Panic);
    assert_ne!(r, otlpflow_result::Internal);
});
