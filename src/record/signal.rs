//! The three OTLP signals, and [`PerSignal`], a value for each of them.
//!
//! A signal is the index everywhere a thing exists once per signal (a ring
//! tag's signal bits, a worker's batches and exporters, the counters in
//! [`crate::Stats`]): `per_signal[Signal::Logs]`, never a bare number.

use std::ops::{Index, IndexMut};

/// An OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces = 0,
    /// Log records.
    Logs = 1,
    /// Metric data points.
    Metrics = 2,
}

impl Signal {
    /// All three, in tag order.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    /// `traces`, `logs` or `metrics`: the OTLP/HTTP path's last part.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The signal of a two-bit tag (a ring record's signal bits); `None` for
    /// the unused value 3.
    pub fn from_bits(bits: u32) -> Option<Signal> {
        match bits {
            0 => Some(Signal::Traces),
            1 => Some(Signal::Logs),
            2 => Some(Signal::Metrics),
            _ => None,
        }
    }

    /// The signal's position in tag order (0, 1, 2).
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// This signal's bit in a set of signals (`1 << index`).
    #[inline]
    pub fn bit(self) -> u64 {
        1 << self.index()
    }
}

/// One value per signal, indexed by [`Signal`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PerSignal<T> {
    /// The value for spans.
    pub traces: T,
    /// The value for log records.
    pub logs: T,
    /// The value for metric data points.
    pub metrics: T,
}

impl<T> PerSignal<T> {
    /// A value for each signal, made by `f`.
    pub fn from_fn(mut f: impl FnMut(Signal) -> T) -> PerSignal<T> {
        PerSignal {
            traces: f(Signal::Traces),
            logs: f(Signal::Logs),
            metrics: f(Signal::Metrics),
        }
    }

    /// Fallible [`PerSignal::from_fn`]: the first error is returned.
    pub fn try_from_fn<E>(mut f: impl FnMut(Signal) -> Result<T, E>) -> Result<PerSignal<T>, E> {
        Ok(PerSignal {
            traces: f(Signal::Traces)?,
            logs: f(Signal::Logs)?,
            metrics: f(Signal::Metrics)?,
        })
    }

    /// Each signal with its value, in tag order.
    pub fn iter(&self) -> impl Iterator<Item = (Signal, &T)> {
        Signal::ALL.into_iter().map(move |s| (s, &self[s]))
    }

    /// The values, in tag order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        [&self.traces, &self.logs, &self.metrics].into_iter()
    }

    /// Each value mapped by `f`.
    pub fn map<U>(&self, mut f: impl FnMut(Signal, &T) -> U) -> PerSignal<U> {
        PerSignal::from_fn(|s| f(s, &self[s]))
    }
}

impl<T: Copy> PerSignal<T> {
    /// The values as an array, in tag order.
    pub fn to_array(&self) -> [T; 3] {
        [self.traces, self.logs, self.metrics]
    }
}

impl<T> Index<Signal> for PerSignal<T> {
    type Output = T;
    #[inline]
    fn index(&self, s: Signal) -> &T {
        match s {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }
}

impl<T> IndexMut<Signal> for PerSignal<T> {
    #[inline]
    fn index_mut(&mut self, s: Signal) -> &mut T {
        match s {
            Signal::Traces => &mut self.traces,
            Signal::Logs => &mut self.logs,
            Signal::Metrics => &mut self.metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_indices_round_trip() {
        for s in Signal::ALL {
            assert_eq!(Signal::from_bits(s.index() as u32), Some(s));
        }
        assert_eq!(Signal::from_bits(3), None);
        let mut p = PerSignal::from_fn(|s| s.index() * 10);
        p[Signal::Logs] += 1;
        assert_eq!(p.values().copied().collect::<Vec<_>>(), [0, 11, 20]);
    }
}
