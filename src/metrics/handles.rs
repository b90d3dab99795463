//! The instruments' handles, what a host records through: each is an
//! `Arc` of its instrument (or of one series of it, once bound), cheap to
//! clone and share between threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Instrument, Series};
use crate::record::KeyValue;

/// A monotonic counter (OTLP sum, monotonic).
#[derive(Clone)]
pub struct Counter(pub(crate) Arc<Instrument>);

/// A counter that goes up and down (OTLP sum, not monotonic).
#[derive(Clone)]
pub struct UpDownCounter(pub(crate) Arc<Instrument>);

/// A gauge: the last value set per attribute set.
#[derive(Clone)]
pub struct Gauge(pub(crate) Arc<Instrument>);

/// An explicit-bucket histogram.
#[derive(Clone)]
pub struct Histogram(pub(crate) Arc<Instrument>);

/// A counter's series for one attribute set: `add` is one atomic add.
#[derive(Clone)]
pub struct BoundCounter {
    series: Arc<Series>,
    instrument: Arc<Instrument>,
}

/// A histogram's series for one attribute set.
#[derive(Clone)]
pub struct BoundHistogram {
    series: Arc<Series>,
    instrument: Arc<Instrument>,
}

impl Counter {
    /// Adds `v` for this attribute set. A data point carries a sum of at
    /// most `i64::MAX` (OTLP's `as_int`): an add past it is dropped and
    /// counted (`Stats::dropped_measurements`), and a sum that passes it is
    /// reported as `i64::MAX`, never as a negative or wrapped number.
    #[inline]
    pub fn add(&self, v: u64, attrs: &[KeyValue<'_>]) {
        if self.0.refuses_add(v) {
            return;
        }
        self.0.series(attrs).add_to_sum(v);
    }

    /// The series of one attribute set, to add to without looking it up.
    pub fn bind(&self, attrs: &[KeyValue<'_>]) -> BoundCounter {
        BoundCounter {
            series: self.0.bind(attrs),
            instrument: self.0.clone(),
        }
    }
}

impl BoundCounter {
    /// Adds `v`, as [`Counter::add`] does.
    #[inline]
    pub fn add(&self, v: u64) {
        if self.instrument.refuses_add(v) {
            return;
        }
        self.series.add_to_sum(v);
    }
}

impl UpDownCounter {
    /// Adds `v` (negative to subtract) for this attribute set.
    #[inline]
    pub fn add(&self, v: i64, attrs: &[KeyValue<'_>]) {
        // Two's complement: wrapping adds of i64 as u64 sum correctly.
        self.0
            .series(attrs)
            .value
            .fetch_add(v as u64, Ordering::Relaxed);
    }
}

impl Gauge {
    /// Sets the value for this attribute set.
    #[inline]
    pub fn set(&self, v: f64, attrs: &[KeyValue<'_>]) {
        let s = self.0.series(attrs);
        s.value.store(v.to_bits(), Ordering::Relaxed);
        // Release: the collector's Acquire swap of `fresh` sees the value.
        s.fresh.store(true, Ordering::Release);
    }
}

impl Histogram {
    /// Records `v` for this attribute set. NaN and the infinities are
    /// dropped and counted (`Stats::dropped_measurements`), as the
    /// OpenTelemetry metrics SDK specification asks ("SHOULD NOT
    /// incorporate non-normal values into the sum, min, and max").
    #[inline]
    pub fn record(&self, v: f64, attrs: &[KeyValue<'_>]) {
        if self.0.refuses(v) {
            return;
        }
        let bucket = self.0.bucket(v);
        if let Some(h) = &self.0.series(attrs).hist {
            h.record(bucket, v);
        }
    }

    /// The series of one attribute set, to record into without looking it
    /// up.
    pub fn bind(&self, attrs: &[KeyValue<'_>]) -> BoundHistogram {
        BoundHistogram {
            series: self.0.bind(attrs),
            instrument: self.0.clone(),
        }
    }
}

impl BoundHistogram {
    /// Records `v`.
    #[inline]
    pub fn record(&self, v: f64) {
        if self.instrument.refuses(v) {
            return;
        }
        if let Some(h) = &self.series.hist {
            h.record(self.instrument.bucket(v), v);
        }
    }
}
