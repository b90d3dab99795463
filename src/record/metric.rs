//! Metric data points: what the host hands in, already aggregated, or what
//! otlpflow's instruments collect. One point is one ring record:
//!
//! ```text
//! kind (1 byte) | flags (1 byte) | varint head_len | head | point
//! ```
//!
//! `head` is the `Metric` message's identity fields (name 1, description 2,
//! unit 3); `point` the data point message body. The worker groups points
//! whose first bytes (kind, flags, head) are equal into one `Metric`, so a
//! request carries each metric once with all its points.

use super::attribute_set::{encode_set, set_len, AttributeSet};
use super::proto3::*;
use super::value::{attributes_len, encode_attributes, KeyValue};
use super::wire::{self, Writer};

/// A number: OTLP data points carry an integer or a double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// `as_int`.
    I64(i64),
    /// `as_double`.
    F64(f64),
}

/// How a sum or histogram's points relate in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Temporality {
    /// Each point covers the time since the previous one.
    Delta = 1,
    /// Each point covers the time since a fixed start.
    #[default]
    Cumulative = 2,
}

/// An explicit-bucket histogram point. `bucket_counts` has one more entry
/// than `bounds` (the last bucket is everything over the last bound).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HistogramPoint<'a> {
    /// Values recorded.
    pub count: u64,
    /// Their sum, if meaningful (no negative values, say).
    pub sum: Option<f64>,
    /// The least value recorded.
    pub min: Option<f64>,
    /// The greatest value recorded.
    pub max: Option<f64>,
    /// Bucket upper bounds, strictly increasing.
    pub bounds: &'a [f64],
    /// Counts per bucket.
    pub bucket_counts: &'a [u64],
}

/// One side (positive or negative) of an exponential histogram: bucket `i`
/// counts values in `(base^(offset+i), base^(offset+i+1)]`, base =
/// `2^(2^-scale)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ExpBuckets<'a> {
    /// Index of the first bucket.
    pub offset: i32,
    /// Counts, from `offset` up.
    pub counts: &'a [u64],
}

/// A base-2 exponential histogram point (OTLP `ExponentialHistogramDataPoint`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ExpHistogramPoint<'a> {
    /// Values recorded: `zero_count` plus every bucket count.
    pub count: u64,
    /// Their sum, if meaningful.
    pub sum: Option<f64>,
    /// The least value recorded.
    pub min: Option<f64>,
    /// The greatest value recorded.
    pub max: Option<f64>,
    /// Resolution: the bucket base is `2^(2^-scale)` (-10..=20).
    pub scale: i32,
    /// Values within `zero_threshold` of zero.
    pub zero_count: u64,
    /// The zero bucket's width (0: exact zeros only).
    pub zero_threshold: f64,
    /// Buckets of positive values.
    pub positive: ExpBuckets<'a>,
    /// Buckets of negative values (by magnitude).
    pub negative: ExpBuckets<'a>,
}

/// The data of one point, by metric type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricData<'a> {
    /// A gauge: the value now.
    Gauge(Number),
    /// A sum.
    Sum {
        /// The value.
        value: Number,
        /// Whether it only goes up (a counter).
        monotonic: bool,
        /// Delta or cumulative.
        temporality: Temporality,
    },
    /// An explicit-bucket histogram.
    Histogram {
        /// The distribution.
        point: HistogramPoint<'a>,
        /// Delta or cumulative.
        temporality: Temporality,
    },
    /// A base-2 exponential histogram.
    ExponentialHistogram {
        /// The distribution.
        point: ExpHistogramPoint<'a>,
        /// Delta or cumulative.
        temporality: Temporality,
    },
}

/// One metric data point with its metric's identity, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint<'a> {
    /// Metric name (required).
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// Unit (UCUM, e.g. "ms", "By", "1").
    pub unit: &'a str,
    /// Attributes encoded once (see [`AttributeSet`]); they come before
    /// `attributes` on the wire.
    pub attribute_set: Option<&'a AttributeSet>,
    /// The point's attributes.
    pub attributes: &'a [KeyValue<'a>],
    /// Start of the point's interval (sums and histograms), ns since epoch.
    pub start_time_unix_nano: u64,
    /// When the point was taken.
    pub time_unix_nano: u64,
    /// Data point flags.
    pub flags: u32,
    /// The value.
    pub data: MetricData<'a>,
}

/// Kinds in the ring record's first byte, and their `Metric` field.
pub(crate) const KIND_GAUGE: u8 = 0;
pub(crate) const KIND_SUM: u8 = 1;
pub(crate) const KIND_HISTOGRAM: u8 = 2;
pub(crate) const KIND_EXP_HISTOGRAM: u8 = 3;

/// The `Metric` field holding the data of a kind.
pub(crate) fn kind_field(kind: u8) -> u32 {
    match kind {
        KIND_GAUGE => 5,
        KIND_SUM => 7,
        KIND_HISTOGRAM => 9,
        _ => 10,
    }
}

mod field {
    // Metric.
    pub const NAME: u32 = 1;
    pub const DESCRIPTION: u32 = 2;
    pub const UNIT: u32 = 3;
    // NumberDataPoint.
    pub const N_START: u32 = 2;
    pub const N_TIME: u32 = 3;
    pub const N_DOUBLE: u32 = 4;
    pub const N_INT: u32 = 6;
    pub const N_ATTRIBUTES: u32 = 7;
    pub const N_FLAGS: u32 = 8;
    // HistogramDataPoint.
    pub const H_START: u32 = 2;
    pub const H_TIME: u32 = 3;
    pub const H_COUNT: u32 = 4;
    pub const H_SUM: u32 = 5;
    pub const H_BUCKETS: u32 = 6;
    pub const H_BOUNDS: u32 = 7;
    pub const H_ATTRIBUTES: u32 = 9;
    pub const H_FLAGS: u32 = 10;
    pub const H_MIN: u32 = 11;
    pub const H_MAX: u32 = 12;
    // ExponentialHistogramDataPoint.
    pub const E_ATTRIBUTES: u32 = 1;
    pub const E_START: u32 = 2;
    pub const E_TIME: u32 = 3;
    pub const E_COUNT: u32 = 4;
    pub const E_SUM: u32 = 5;
    pub const E_SCALE: u32 = 6;
    pub const E_ZERO_COUNT: u32 = 7;
    pub const E_POSITIVE: u32 = 8;
    pub const E_NEGATIVE: u32 = 9;
    pub const E_FLAGS: u32 = 10;
    pub const E_MIN: u32 = 12;
    pub const E_MAX: u32 = 13;
    pub const E_ZERO_THRESHOLD: u32 = 14;
    // Buckets.
    pub const B_OFFSET: u32 = 1;
    pub const B_COUNTS: u32 = 2;
}

/// `sint32` on the wire: zigzag, so small negative numbers stay short.
fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn packed_varints_len(counts: &[u64]) -> usize {
    counts.iter().map(|c| wire::varint_len(*c)).sum()
}

fn buckets_body_len(b: &ExpBuckets<'_>) -> usize {
    uint_len(field::B_OFFSET, zigzag(b.offset))
        + if b.counts.is_empty() {
            0
        } else {
            wire::len_field(field::B_COUNTS, packed_varints_len(b.counts))
        }
}

fn buckets_len(f: u32, b: &ExpBuckets<'_>) -> usize {
    match buckets_body_len(b) {
        0 => 0,
        body => wire::len_field(f, body),
    }
}

fn put_buckets(w: &mut Writer<'_>, f: u32, b: &ExpBuckets<'_>) {
    let body = buckets_body_len(b);
    if body == 0 {
        return;
    }
    w.message_header(f, body);
    put_uint(w, field::B_OFFSET, zigzag(b.offset));
    if !b.counts.is_empty() {
        w.message_header(field::B_COUNTS, packed_varints_len(b.counts));
        for c in b.counts {
            w.varint(*c);
        }
    }
}

/// Why a point was refused.
pub(crate) fn invalid(p: &MetricPoint<'_>) -> Option<&'static str> {
    if p.name.is_empty() {
        return Some("metric name is empty");
    }
    if let MetricData::Histogram { point, .. } = &p.data {
        if point.bucket_counts.len() != point.bounds.len() + 1 {
            return Some("histogram needs one more bucket count than bounds");
        }
        if point.bounds.iter().any(|b| !b.is_finite())
            || point.bounds.windows(2).any(|w| w[0] >= w[1])
        {
            return Some("histogram bounds must be finite and strictly increasing");
        }
        if point.bucket_counts.iter().sum::<u64>() != point.count {
            return Some("histogram count is not the sum of its bucket counts");
        }
    }
    if let MetricData::ExponentialHistogram { point, .. } = &p.data {
        if !(-10..=20).contains(&point.scale) {
            return Some("exponential histogram scale must be in -10..=20");
        }
        let buckets = point
            .positive
            .counts
            .iter()
            .chain(point.negative.counts)
            .try_fold(0u64, |a, c| a.checked_add(*c));
        if buckets.and_then(|b| b.checked_add(point.zero_count)) != Some(point.count) {
            return Some("exponential histogram count is not zero_count plus its bucket counts");
        }
        if !(point.zero_threshold >= 0.0 && point.zero_threshold.is_finite()) {
            return Some("exponential histogram zero threshold must be finite and non-negative");
        }
    }
    None
}

impl MetricPoint<'_> {
    fn kind_and_flags(&self) -> (u8, u8) {
        match self.data {
            MetricData::Gauge(_) => (KIND_GAUGE, 0),
            MetricData::Sum {
                monotonic,
                temporality,
                ..
            } => (KIND_SUM, monotonic as u8 | (temporality as u8) << 1),
            MetricData::Histogram { temporality, .. } => (KIND_HISTOGRAM, (temporality as u8) << 1),
            MetricData::ExponentialHistogram { temporality, .. } => {
                (KIND_EXP_HISTOGRAM, (temporality as u8) << 1)
            }
        }
    }

    fn head_len(&self) -> usize {
        use field::*;
        str_len(NAME, self.name) + str_len(DESCRIPTION, self.description) + str_len(UNIT, self.unit)
    }

    fn point_len(&self) -> usize {
        use field::*;
        match &self.data {
            MetricData::Gauge(_) | MetricData::Sum { .. } => {
                fixed64_len(N_START, self.start_time_unix_nano)
                    + fixed64_len(N_TIME, self.time_unix_nano)
                    + NUMBER_LEN
                    + set_len(self.attribute_set)
                    + attributes_len(N_ATTRIBUTES, self.attributes)
                    + uint_len(N_FLAGS, self.flags as u64)
            }
            MetricData::Histogram { point: h, .. } => {
                let opt = |v: Option<f64>, f: u32| v.map_or(0, |_| wire::key_len(f) + 8);
                fixed64_len(H_START, self.start_time_unix_nano)
                    + fixed64_len(H_TIME, self.time_unix_nano)
                    + fixed64_len(H_COUNT, h.count)
                    + opt(h.sum, H_SUM)
                    + packed_len(H_BUCKETS, h.bucket_counts.len())
                    + packed_len(H_BOUNDS, h.bounds.len())
                    + set_len(self.attribute_set)
                    + attributes_len(H_ATTRIBUTES, self.attributes)
                    + uint_len(H_FLAGS, self.flags as u64)
                    + opt(h.min, H_MIN)
                    + opt(h.max, H_MAX)
            }
            MetricData::ExponentialHistogram { point: e, .. } => {
                let opt = |v: Option<f64>, f: u32| v.map_or(0, |_| wire::key_len(f) + 8);
                set_len(self.attribute_set)
                    + attributes_len(E_ATTRIBUTES, self.attributes)
                    + fixed64_len(E_START, self.start_time_unix_nano)
                    + fixed64_len(E_TIME, self.time_unix_nano)
                    + fixed64_len(E_COUNT, e.count)
                    + opt(e.sum, E_SUM)
                    + uint_len(E_SCALE, zigzag(e.scale))
                    + fixed64_len(E_ZERO_COUNT, e.zero_count)
                    + buckets_len(E_POSITIVE, &e.positive)
                    + buckets_len(E_NEGATIVE, &e.negative)
                    + uint_len(E_FLAGS, self.flags as u64)
                    + opt(e.min, E_MIN)
                    + opt(e.max, E_MAX)
                    + fixed64_len(E_ZERO_THRESHOLD, e.zero_threshold.to_bits())
            }
        }
    }

    /// Size of the ring record.
    pub fn encoded_len(&self) -> usize {
        let head = self.head_len();
        2 + wire::varint_len(head as u64) + head + self.point_len()
    }

    /// Writes the ring record into `buf`, exactly [`MetricPoint::encoded_len`]
    /// bytes long.
    pub fn encode(&self, buf: &mut [u8]) {
        let w = &mut Writer::new(buf);
        self.encode_fields(w);
        debug_assert_eq!(w.position(), self.encoded_len());
    }

    /// Writes the ring record through `w` (exactly sized, or scratch
    /// space).
    #[inline(always)]
    pub(crate) fn encode_fields(&self, w: &mut Writer<'_>) {
        use field::*;
        let (kind, flags) = self.kind_and_flags();
        w.raw(&[kind, flags]);
        w.varint(self.head_len() as u64);
        put_str(w, NAME, self.name);
        put_str(w, DESCRIPTION, self.description);
        put_str(w, UNIT, self.unit);
        match &self.data {
            MetricData::Gauge(v) | MetricData::Sum { value: v, .. } => {
                put_fixed64(w, N_START, self.start_time_unix_nano);
                put_fixed64(w, N_TIME, self.time_unix_nano);
                // A oneof member is written even when zero: its presence is
                // the information.
                match *v {
                    Number::F64(d) => w.fixed64_field(N_DOUBLE, d.to_bits()),
                    Number::I64(i) => w.fixed64_field(N_INT, i as u64),
                }
                encode_set(w, N_ATTRIBUTES, self.attribute_set);
                encode_attributes(w, N_ATTRIBUTES, self.attributes);
                put_uint(w, N_FLAGS, self.flags as u64);
            }
            MetricData::Histogram { point: h, .. } => {
                put_fixed64(w, H_START, self.start_time_unix_nano);
                put_fixed64(w, H_TIME, self.time_unix_nano);
                put_fixed64(w, H_COUNT, h.count);
                if let Some(s) = h.sum {
                    w.fixed64_field(H_SUM, s.to_bits());
                }
                if !h.bucket_counts.is_empty() {
                    w.message_header(H_BUCKETS, h.bucket_counts.len() * 8);
                    for c in h.bucket_counts {
                        w.raw(&c.to_le_bytes());
                    }
                }
                if !h.bounds.is_empty() {
                    w.message_header(H_BOUNDS, h.bounds.len() * 8);
                    for b in h.bounds {
                        w.raw(&b.to_bits().to_le_bytes());
                    }
                }
                encode_set(w, H_ATTRIBUTES, self.attribute_set);
                encode_attributes(w, H_ATTRIBUTES, self.attributes);
                put_uint(w, H_FLAGS, self.flags as u64);
                if let Some(v) = h.min {
                    w.fixed64_field(H_MIN, v.to_bits());
                }
                if let Some(v) = h.max {
                    w.fixed64_field(H_MAX, v.to_bits());
                }
            }
            MetricData::ExponentialHistogram { point: e, .. } => {
                encode_set(w, E_ATTRIBUTES, self.attribute_set);
                encode_attributes(w, E_ATTRIBUTES, self.attributes);
                put_fixed64(w, E_START, self.start_time_unix_nano);
                put_fixed64(w, E_TIME, self.time_unix_nano);
                put_fixed64(w, E_COUNT, e.count);
                if let Some(s) = e.sum {
                    w.fixed64_field(E_SUM, s.to_bits());
                }
                put_uint(w, E_SCALE, zigzag(e.scale));
                put_fixed64(w, E_ZERO_COUNT, e.zero_count);
                put_buckets(w, E_POSITIVE, &e.positive);
                put_buckets(w, E_NEGATIVE, &e.negative);
                put_uint(w, E_FLAGS, self.flags as u64);
                if let Some(v) = e.min {
                    w.fixed64_field(E_MIN, v.to_bits());
                }
                if let Some(v) = e.max {
                    w.fixed64_field(E_MAX, v.to_bits());
                }
                put_fixed64(w, E_ZERO_THRESHOLD, e.zero_threshold.to_bits());
            }
        }
    }
}

/// Either member of a data point's value is 8 bytes after a one-byte key.
const NUMBER_LEN: usize = wire::key_len(field::N_DOUBLE) + 8;

fn packed_len(f: u32, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        wire::len_field(f, n * 8)
    }
}

/// Splits a metric ring record into its grouping key (kind, flags, head)
/// and its point. `None` if the record is malformed (never, for records
/// this crate wrote).
pub(crate) fn split(record: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = record.get(2..)?;
    let (head_len, n) = read_varint(rest)?;
    let key_end = 2 + n + head_len as usize;
    if key_end > record.len() {
        return None;
    }
    Some((&record[..key_end], &record[key_end..]))
}

/// The kind, flags and head of a grouping key from [`split`].
pub(crate) fn key_parts(key: &[u8]) -> (u8, u8, &[u8]) {
    let (_, n) = read_varint(&key[2..]).unwrap_or((0, 1));
    (key[0], key[1], &key[2 + n..])
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Writes one `Metric` message body for a group: its head, then the data
/// field holding the points (each already framed as `data_points`), the
/// temporality and the monotonic flag.
pub(crate) fn write_metric(out: &mut Vec<u8>, key: &[u8], points: &[u8]) {
    let (kind, flags, head) = key_parts(key);
    let temporality = (flags >> 1) as u64 & 3;
    let monotonic = flags & 1 == 1;
    let mut data_len = points.len();
    if kind != KIND_GAUGE && temporality != 0 {
        data_len += wire::varint_field(2, temporality);
    }
    if kind == KIND_SUM && monotonic {
        data_len += wire::varint_field(3, 1);
    }
    let body = head.len() + wire::len_field(kind_field(kind), data_len);
    wire::put_len_header(out, 2, body);
    out.extend_from_slice(head);
    wire::put_len_header(out, kind_field(kind), data_len);
    out.extend_from_slice(points);
    if kind != KIND_GAUGE && temporality != 0 {
        out.push(2 << 3);
        wire::put_varint(out, temporality);
    }
    if kind == KIND_SUM && monotonic {
        out.push(3 << 3);
        out.push(1);
    }
}
