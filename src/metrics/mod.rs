//! Lock-free instruments: counters, up-down counters, gauges and
//! histograms that aggregate in memory per attribute set and are collected
//! on an interval into metric data points, which then travel the ordinary
//! record path (rings, batches grouped by metric, export).
//!
//! Each instrument keeps an open-addressing table of series (`table`), one
//! per distinct attribute set, growing with them: a slot is an `AtomicPtr`
//! filled once and never emptied while the instrument lives, so finding a
//! series is a hash, a few loads and a byte comparison, with no lock. At most
//! `cardinality_limit` series are made; later attribute sets go to the
//! overflow series (`otel.metric.overflow = true`), as the OpenTelemetry SDK
//! specifies. A series is a few cache-padded atomics: one `fetch_add` for a
//! counter, a store for a gauge, the double-buffered cells of `cell` for a
//! histogram. `bind` hands out a series for hot loops that record with the
//! same attributes.

pub(crate) mod cell;
mod handles;
mod registry;
mod table;

pub use handles::{BoundCounter, BoundHistogram, Counter, Gauge, Histogram, UpDownCounter};
pub(crate) use registry::{Identity, Instruments};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::record::metric::{HistogramPoint, MetricData, MetricPoint, Number};
use crate::record::value::{attributes_len, encode_attributes};
use crate::record::wire::Writer;
use crate::record::{KeyValue, Temporality, Value};

/// The OpenTelemetry SDK's default explicit bucket bounds.
pub const DEFAULT_BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// What an instrument measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Counter,
    UpDownCounter,
    Gauge,
    Histogram,
}

/// The per-series state.
pub(crate) struct Series {
    hash: u64,
    /// The attributes, encoded as the data point's attributes field.
    attrs: Vec<u8>,
    /// Counter (u64), up-down counter (i64 as u64) or gauge (f64 bits).
    value: CachePadded<AtomicU64>,
    /// Gauge: set since the last collection. Counter: the sum passed
    /// [`MAX_SUM`] (since the last collection, for delta).
    fresh: AtomicBool,
    hist: Option<cell::DoubleBuffered>,
    /// Collector-only state (cumulative histogram totals, last counter
    /// value reported): never touched on the record path.
    acc: Mutex<Acc>,
}

#[derive(Default)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: Vec<u64>,
}

/// An instrument: identity, bounds and its series table.
pub(crate) struct Instrument {
    pub(crate) kind: Kind,
    pub(crate) scope: crate::Scope,
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) description: String,
    pub(crate) bounds: Vec<f64>,
    series: table::SeriesTable<Series>,
    overflow: Arc<Series>,
    /// When cumulative points start (instrument creation), ns since epoch.
    start_ns: u64,
    /// Start of the current delta interval.
    delta_start_ns: AtomicU64,
    /// Measurements dropped: a histogram's NaN or infinity (it falls in
    /// no bucket, and one NaN made the sum NaN for good, cumulative), or a
    /// counter's add past [`MAX_SUM`].
    pub(crate) dropped: AtomicU64,
}

/// The largest sum a counter's data point carries: OTLP's `as_int` is a
/// signed 64-bit integer. A larger one went out negative, or wrapped round
/// to a small one: a monotonic counter going backwards, which a backend
/// reads as a reset.
pub(crate) const MAX_SUM: u64 = i64::MAX as u64;

impl table::Keyed for Series {
    fn key_hash(&self) -> u64 {
        self.hash
    }
    fn key(&self) -> &[u8] {
        &self.attrs
    }
}

impl Series {
    /// Adds `v` (at most [`MAX_SUM`]) to a counter's sum. A sum that
    /// passes `MAX_SUM` is marked, and reported as `MAX_SUM` from then on
    /// (until the next delta interval): one add, and on the rare path a
    /// store, where a saturating add would be a compare-and-swap loop
    /// under contention.
    #[inline]
    pub(crate) fn add_to_sum(&self, v: u64) {
        let old = self.value.fetch_add(v, Ordering::Relaxed);
        // `old` and `v` are each at most MAX_SUM until the mark is set, so
        // their sum cannot wrap a u64 before it is; once it is, what the
        // sum holds no longer matters.
        if old.wrapping_add(v) > MAX_SUM {
            self.fresh.store(true, Ordering::Relaxed);
        }
    }

    /// A counter's sum as it goes out, `MAX_SUM` once it passed it;
    /// `delta` takes it (and the mark) for the next interval.
    fn take_sum(&self, delta: bool) -> u64 {
        let (v, passed) = if delta {
            (
                self.value.swap(0, Ordering::Relaxed),
                self.fresh.swap(false, Ordering::Relaxed),
            )
        } else {
            (
                self.value.load(Ordering::Relaxed),
                self.fresh.load(Ordering::Relaxed),
            )
        };
        // The mark may lag the add that set it: the sum itself says so too
        // until a later add wraps it.
        if passed || v > MAX_SUM {
            MAX_SUM
        } else {
            v
        }
    }
}

// Attribute field numbers: NumberDataPoint 7, HistogramDataPoint 9.
fn attr_field(kind: Kind) -> u32 {
    if kind == Kind::Histogram {
        9
    } else {
        7
    }
}

fn hash_bytes(b: &[u8]) -> u64 {
    // FxHash-style: a rotate, xor and multiply per 8 bytes. Attribute sets
    // are short; a keyed hash would cost more than the table lookup.
    let mut h = 0u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    for &x in chunks.remainder() {
        h = (h.rotate_left(5) ^ x as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h
}

thread_local! {
    /// Scratch space to encode attribute sets in, per thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes `attrs` sorted by key (attribute sets are sets: order does not
/// make a new series) as field `field`, and calls `f` with the bytes.
fn with_encoded<R>(field: u32, attrs: &[KeyValue<'_>], f: impl FnOnce(&[u8]) -> R) -> R {
    let sorted = attrs.windows(2).all(|w| w[0].key <= w[1].key);
    let owned;
    let attrs = if sorted {
        attrs
    } else {
        let mut v = attrs.to_vec();
        v.sort_by(|a, b| a.key.cmp(b.key));
        owned = v;
        &owned[..]
    };
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        buf.clear();
        buf.resize(attributes_len(field, attrs), 0);
        encode_attributes(&mut Writer::new(&mut buf), field, attrs);
        f(&buf)
    })
}

impl Series {
    fn new(hash: u64, attrs: Vec<u8>, kind: Kind, buckets: usize) -> Series {
        Series {
            hash,
            attrs,
            value: CachePadded::new(AtomicU64::new(0)),
            fresh: AtomicBool::new(false),
            hist: (kind == Kind::Histogram).then(|| cell::DoubleBuffered::new(buckets)),
            acc: Mutex::new(Acc {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                buckets: vec![0; buckets],
                ..Acc::default()
            }),
        }
    }
}

impl Instrument {
    pub(crate) fn new(
        kind: Kind,
        scope: crate::Scope,
        name: &str,
        unit: &str,
        description: &str,
        bounds: Vec<f64>,
        limit: usize,
    ) -> Instrument {
        let buckets = bounds.len() + 1;
        let overflow = with_encoded(
            attr_field(kind),
            &[KeyValue::new("otel.metric.overflow", Value::Bool(true))],
            |b| Series::new(0, b.to_vec(), kind, buckets),
        );
        let now = crate::clock::now_unix_nano();
        Instrument {
            kind,
            scope,
            name: name.to_owned(),
            unit: unit.to_owned(),
            description: description.to_owned(),
            bounds,
            series: table::SeriesTable::new(limit),
            overflow: Arc::new(overflow),
            start_ns: now,
            delta_start_ns: AtomicU64::new(now),
            dropped: AtomicU64::new(0),
        }
    }

    /// The series of an attribute set, made if new (or the overflow series
    /// past the cardinality limit). Lock-free.
    fn series(&self, attrs: &[KeyValue<'_>]) -> &Series {
        with_encoded(attr_field(self.kind), attrs, |bytes| self.find(bytes))
    }

    fn find(&self, bytes: &[u8]) -> &Series {
        let hash = hash_bytes(bytes);
        let make = || Series::new(hash, bytes.to_vec(), self.kind, self.bounds.len() + 1);
        self.series
            .get_or_make(hash, bytes, make)
            .unwrap_or(&self.overflow)
    }

    /// An owning handle on a series, for `bind`.
    fn bind(&self, attrs: &[KeyValue<'_>]) -> Arc<Series> {
        let s: *const Series = self.series(attrs);
        if std::ptr::eq(s, &*self.overflow) {
            return self.overflow.clone();
        }
        // SAFETY: `s` is a table entry from `Arc::into_raw` (see `find`),
        // alive while `self` is; we add a count for the new `Arc`.
        unsafe {
            Arc::increment_strong_count(s);
            Arc::from_raw(s)
        }
    }

    fn all_series(&self) -> impl Iterator<Item = &Series> {
        self.series
            .iter()
            // The overflow series takes traffic only once the table is full.
            .chain(self.series.is_full().then_some(&*self.overflow))
    }

    /// Whether a histogram measurement is dropped (NaN or infinite), and
    /// counts it if so.
    #[inline]
    fn refuses(&self, v: f64) -> bool {
        if v.is_finite() {
            return false;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether a counter's add is dropped (past [`MAX_SUM`], which no data
    /// point carries), and counts it if so.
    #[inline]
    fn refuses_add(&self, v: u64) -> bool {
        if v <= MAX_SUM {
            return false;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn bucket(&self, v: f64) -> usize {
        // Buckets are (prev, bound]: the first bound >= v.
        self.bounds.partition_point(|b| *b < v)
    }

    /// Collects every series into data points and hands each to `emit`
    /// with the series' encoded attributes. One collector at a time (the
    /// pipeline serialises collections).
    pub(crate) fn collect(
        &self,
        temporality: Temporality,
        emit: &mut dyn FnMut(&MetricPoint<'_>, &[u8]),
    ) {
        // An up-down counter reports its level whatever the preference, as
        // the OpenTelemetry SDKs map a delta one: a level sent as deltas is
        // lost for good with one lost point.
        let temporality = match self.kind {
            Kind::UpDownCounter => Temporality::Cumulative,
            _ => temporality,
        };
        let now = crate::clock::now_unix_nano();
        let start = match temporality {
            Temporality::Cumulative => self.start_ns,
            Temporality::Delta => self.delta_start_ns.swap(now, Ordering::Relaxed),
        };
        fn point<'a>(
            i: &'a Instrument,
            start: u64,
            now: u64,
            data: MetricData<'a>,
        ) -> MetricPoint<'a> {
            MetricPoint {
                name: &i.name,
                description: &i.description,
                unit: &i.unit,
                attribute_set: None,
                attributes: &[],
                start_time_unix_nano: start,
                time_unix_nano: now,
                flags: 0,
                data,
            }
        }
        for s in self.all_series() {
            match self.kind {
                Kind::Counter | Kind::UpDownCounter => {
                    let delta = temporality == Temporality::Delta;
                    let v = match self.kind {
                        Kind::Counter => s.take_sum(delta),
                        _ if delta => s.value.swap(0, Ordering::Relaxed),
                        _ => s.value.load(Ordering::Relaxed),
                    };
                    if temporality == Temporality::Delta && v == 0 {
                        continue;
                    }
                    let p = point(
                        self,
                        start,
                        now,
                        MetricData::Sum {
                            value: Number::I64(v as i64),
                            monotonic: self.kind == Kind::Counter,
                            temporality,
                        },
                    );
                    emit(&p, &s.attrs);
                }
                Kind::Gauge => {
                    if !s.fresh.swap(false, Ordering::Acquire) {
                        continue;
                    }
                    let v = f64::from_bits(s.value.load(Ordering::Relaxed));
                    let p = MetricPoint {
                        start_time_unix_nano: 0,
                        ..point(self, start, now, MetricData::Gauge(Number::F64(v)))
                    };
                    emit(&p, &s.attrs);
                }
                Kind::Histogram => {
                    let Some(h) = &s.hist else { continue };
                    let d = h.collect();
                    let mut acc = s.acc.lock();
                    let (count, sum, min, max, buckets);
                    match temporality {
                        Temporality::Delta => {
                            if d.count == 0 {
                                continue;
                            }
                            (count, sum, min, max) = (d.count, d.sum, d.min, d.max);
                            buckets = d.buckets;
                        }
                        Temporality::Cumulative => {
                            acc.count += d.count;
                            acc.sum += d.sum;
                            acc.min = acc.min.min(d.min);
                            acc.max = acc.max.max(d.max);
                            for (a, b) in acc.buckets.iter_mut().zip(&d.buckets) {
                                *a += b;
                            }
                            if acc.count == 0 {
                                continue;
                            }
                            (count, sum, min, max) = (acc.count, acc.sum, acc.min, acc.max);
                            buckets = acc.buckets.clone();
                        }
                    }
                    let p = point(
                        self,
                        start,
                        now,
                        MetricData::Histogram {
                            point: HistogramPoint {
                                count,
                                sum: Some(sum),
                                min: Some(min),
                                max: Some(max),
                                bounds: &self.bounds,
                                bucket_counts: &buckets,
                            },
                            temporality,
                        },
                    );
                    emit(&p, &s.attrs);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instrument(kind: Kind, limit: usize) -> Instrument {
        Instrument::new(
            kind,
            crate::Scope::from_parts(0, 0),
            "m",
            "1",
            "",
            vec![1.0, 10.0],
            limit,
        )
    }

    fn collect(i: &Instrument, t: Temporality) -> Vec<(Vec<u8>, MetricData<'static>)> {
        let mut out = Vec::new();
        i.collect(t, &mut |p, attrs| {
            let data = match p.data {
                MetricData::Histogram { point, temporality } => MetricData::Histogram {
                    point: HistogramPoint {
                        bounds: &[],
                        bucket_counts: Box::leak(point.bucket_counts.to_vec().into_boxed_slice()),
                        ..point
                    },
                    temporality,
                },
                MetricData::Gauge(n) => MetricData::Gauge(n),
                MetricData::Sum {
                    value,
                    monotonic,
                    temporality,
                } => MetricData::Sum {
                    value,
                    monotonic,
                    temporality,
                },
                MetricData::ExponentialHistogram { .. } => {
                    unreachable!("instruments make explicit-bucket histograms")
                }
            };
            out.push((attrs.to_vec(), data));
        });
        out
    }

    #[test]
    fn attribute_order_does_not_make_a_new_series_and_the_limit_overflows() {
        let c = Counter(Arc::new(instrument(Kind::Counter, 2)));
        let a = [
            KeyValue::new("a", Value::I64(1)),
            KeyValue::new("b", Value::I64(2)),
        ];
        let b = [a[1], a[0]];
        c.add(1, &a);
        c.add(2, &b);
        c.add(4, &[KeyValue::new("x", Value::I64(1))]);
        c.add(8, &[KeyValue::new("y", Value::I64(1))]);
        c.add(16, &[KeyValue::new("z", Value::I64(1))]);
        let points = collect(&c.0, Temporality::Cumulative);
        let values: Vec<i64> = points
            .iter()
            .map(|(_, d)| match d {
                MetricData::Sum {
                    value: Number::I64(v),
                    ..
                } => *v,
                other => panic!("{other:?}"),
            })
            .collect();
        // {a,b} = 3, {x} = 4, and the overflow series got y and z.
        let mut sorted = values.clone();
        sorted.sort();
        assert_eq!(sorted, vec![3, 4, 24], "{points:?}");
    }

    #[test]
    fn delta_and_cumulative_histograms() {
        let h = Histogram(Arc::new(instrument(Kind::Histogram, 10)));
        let bound = h.bind(&[]);
        for v in [0.5, 5.0, 50.0, 1.0] {
            bound.record(v);
        }
        let pts = collect(&h.0, Temporality::Cumulative);
        let MetricData::Histogram { point, .. } = pts[0].1 else {
            panic!()
        };
        assert_eq!(point.count, 4);
        assert_eq!(point.bucket_counts, &[2, 1, 1]);
        assert_eq!((point.min, point.max), (Some(0.5), Some(50.0)));
        h.record(2.0, &[]);
        let pts = collect(&h.0, Temporality::Cumulative);
        let MetricData::Histogram { point, .. } = pts[0].1 else {
            panic!()
        };
        assert_eq!(point.count, 5, "cumulative keeps the total");
        let d = Histogram(Arc::new(instrument(Kind::Histogram, 10)));
        d.record(3.0, &[]);
        assert_eq!(collect(&d.0, Temporality::Delta).len(), 1);
        assert_eq!(collect(&d.0, Temporality::Delta).len(), 0, "nothing new");
    }
}
