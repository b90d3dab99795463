//! Latency histograms: log-linear buckets of nanosecond values with their
//! sum, minimum and maximum, recorded with relaxed atomics (once per
//! request, or per sampled record), summed by a snapshot, read as
//! percentiles, mean, minimum and maximum.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sub-buckets per power of two: 2^3 = 8, so a bucket is at most 12.5% wide.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
pub(crate) const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// A log-linear histogram of nanosecond values with atomic buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
    /// `u64::MAX` until the first sample.
    min: AtomicU64,
    /// Sum of the samples (wraps after 584 years of nanoseconds).
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            sum: AtomicU64::new(0),
        }
    }
}

/// Several histograms summed by a snapshot.
pub(crate) struct Sum {
    buckets: Vec<u64>,
    max: u64,
    min: u64,
    sum: u64,
}

impl Default for Sum {
    fn default() -> Self {
        Sum {
            buckets: vec![0; BUCKETS],
            max: 0,
            min: u64::MAX,
            sum: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let mantissa = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + mantissa) as usize
}

/// The largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB + SUB_BITS as u64 - 1;
    let mantissa = i % SUB;
    let low = (SUB + mantissa) << (exp - SUB_BITS as u64);
    low + (1u64 << (exp - SUB_BITS as u64)) - 1
}

impl Histogram {
    pub fn record(&self, v: u64) {
        self.buckets[bucket_of(v)].fetch_add(1, Relaxed);
        self.max.fetch_max(v, Relaxed);
        self.min.fetch_min(v, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    pub(crate) fn add_into(&self, into: &mut Sum) {
        for (acc, b) in into.buckets.iter_mut().zip(self.buckets.iter()) {
            *acc += b.load(Relaxed);
        }
        into.max = into.max.max(self.max.load(Relaxed));
        into.min = into.min.min(self.min.load(Relaxed));
        into.sum = into.sum.wrapping_add(self.sum.load(Relaxed));
    }
}

/// Percentiles of a latency distribution, in nanoseconds (upper bucket edges,
/// within 12.5%).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Mean (0 without samples).
    pub mean_ns: u64,
    /// Smallest sample (0 without samples).
    pub min_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
}

impl Latency {
    pub(crate) fn from_sum(s: &Sum) -> Latency {
        let (buckets, max) = (&s.buckets[..], s.max);
        let count: u64 = buckets.iter().sum();
        let at = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bucket_high(i).min(max);
                }
            }
            max
        };
        Latency {
            count,
            // A snapshot under load may read a bucket before its sum.
            mean_ns: s.sum.checked_div(count).unwrap_or(0),
            min_ns: if count == 0 { 0 } else { s.min },
            p50_ns: at(0.50),
            p90_ns: at(0.90),
            p99_ns: at(0.99),
            p999_ns: at(0.999),
            max_ns: max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_within_an_eighth() {
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            123_456_789,
            u64::MAX / 3,
        ] {
            let i = bucket_of(v);
            let high = bucket_high(i);
            assert!(high >= v, "v={v} high={high}");
            assert!(
                (high - v) as f64 <= v as f64 / 8.0 + 1.0,
                "v={v} high={high}"
            );
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let mut sum = Sum::default();
        h.add_into(&mut sum);
        let l = Latency::from_sum(&sum);
        assert_eq!(l.count, 1000);
        assert_eq!((l.min_ns, l.mean_ns), (1_000, 500_500));
        assert!((500_000..=570_000).contains(&l.p50_ns), "{l:?}");
        assert!((990_000..=1_000_000).contains(&l.p99_ns), "{l:?}");
        assert_eq!(l.max_ns, 1_000_000);
        let empty = Latency::from_sum(&Sum::default());
        assert_eq!((empty.count, empty.min_ns, empty.mean_ns), (0, 0, 0));
    }
}
