//! The SDK's push metric exporter: each data point of a collection into
//! the ring.

use opentelemetry::KeyValue as OtelKeyValue;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use std::time::{Duration, SystemTime};

use super::{array_elements, attributes, unix_nanos, Common};
use crate::engine::{Pipeline, Scope};

/// An `opentelemetry_sdk` push metric exporter recording every data point
/// into a pipeline (use it with the SDK's `PeriodicReader`). Each point is
/// a record of its own; points of one metric that meet in a batch are sent
/// as one `Metric`, as the SDK's own exporter does.
#[derive(Debug)]
pub struct MetricExporter {
    common: Common,
    temporality: opentelemetry_sdk::metrics::Temporality,
}

impl MetricExporter {
    /// An exporter over `pipeline` asking the SDK for the pipeline's
    /// temporality (`PipelineBuilder::metrics_temporality`, which
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` sets): cumulative
    /// by default; delta makes counters and histograms delta, up-down
    /// counters staying cumulative, as the OTLP exporters do.
    pub fn new(pipeline: &Pipeline) -> MetricExporter {
        use opentelemetry_sdk::metrics::Temporality as Sdk;
        MetricExporter {
            common: Common::new(pipeline),
            temporality: match pipeline.metrics_temporality() {
                crate::record::Temporality::Delta => Sdk::Delta,
                crate::record::Temporality::Cumulative => Sdk::Cumulative,
            },
        }
    }

    /// Asks the SDK for delta (or cumulative) temporality.
    pub fn with_temporality(mut self, t: opentelemetry_sdk::metrics::Temporality) -> Self {
        self.temporality = t;
        self
    }

    fn record_all(&self, metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics) {
        use opentelemetry_sdk::metrics::data::AggregatedMetrics;
        for sm in metrics.scope_metrics() {
            let scope = self.common.scope(sm.scope());
            for m in sm.metrics() {
                let mut out = PointSink {
                    exporter: self,
                    scope,
                    metric: m,
                };
                match m.data() {
                    AggregatedMetrics::F64(d) => out.all(d, |v| crate::record::Number::F64(*v)),
                    AggregatedMetrics::I64(d) => out.all(d, |v| crate::record::Number::I64(*v)),
                    AggregatedMetrics::U64(d) => out.all(d, |v| {
                        i64::try_from(*v).map_or(
                            crate::record::Number::F64(*v as f64),
                            crate::record::Number::I64,
                        )
                    }),
                }
            }
        }
    }
}

fn temporality(t: opentelemetry_sdk::metrics::Temporality) -> crate::record::Temporality {
    match t {
        opentelemetry_sdk::metrics::Temporality::Delta => crate::record::Temporality::Delta,
        _ => crate::record::Temporality::Cumulative,
    }
}

/// The SDK's value types as the `f64` of a histogram's sum, min and max.
trait AsF64: Copy {
    fn as_f64(self) -> f64;
}

impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

impl AsF64 for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AsF64 for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

/// Records the points of one metric.
struct PointSink<'a> {
    exporter: &'a MetricExporter,
    scope: Scope,
    metric: &'a opentelemetry_sdk::metrics::data::Metric,
}

impl PointSink<'_> {
    fn record(
        &mut self,
        attrs: &[&OtelKeyValue],
        start: Option<SystemTime>,
        time: SystemTime,
        data: crate::record::MetricData<'_>,
    ) {
        let owned: Vec<OtelKeyValue> = attrs.iter().map(|kv| (*kv).clone()).collect();
        let elements = array_elements(&[&owned[..]]);
        let mut kvs = Vec::with_capacity(owned.len());
        attributes(&owned, &elements, &mut 0, &mut kvs);
        let point = crate::record::MetricPoint {
            name: self.metric.name(),
            description: self.metric.description(),
            unit: self.metric.unit(),
            attribute_set: None,
            attributes: &kvs,
            start_time_unix_nano: start.map_or(0, unix_nanos),
            time_unix_nano: unix_nanos(time),
            flags: 0,
            data,
        };
        // A refusal is counted by the pipeline, by reason.
        let _ = self
            .exporter
            .common
            .pipeline
            .record_metric(&self.scope, &point);
    }

    fn all<T: AsF64>(
        &mut self,
        data: &opentelemetry_sdk::metrics::data::MetricData<T>,
        number: impl Fn(&T) -> crate::record::Number,
    ) {
        use crate::record::{ExpBuckets, ExpHistogramPoint, HistogramPoint, MetricData};
        use opentelemetry_sdk::metrics::data::MetricData as Data;
        match data {
            Data::Gauge(g) => {
                for p in g.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    self.record(
                        &a,
                        g.start_time(),
                        g.time(),
                        MetricData::Gauge(number(&p.value())),
                    );
                }
            }
            Data::Sum(s) => {
                for p in s.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    let d = MetricData::Sum {
                        value: number(&p.value()),
                        monotonic: s.is_monotonic(),
                        temporality: temporality(s.temporality()),
                    };
                    self.record(&a, Some(s.start_time()), s.time(), d);
                }
            }
            Data::Histogram(h) => {
                for p in h.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    let bounds: Vec<f64> = p.bounds().collect();
                    let counts: Vec<u64> = p.bucket_counts().collect();
                    let d = MetricData::Histogram {
                        point: HistogramPoint {
                            count: p.count(),
                            sum: Some(p.sum().as_f64()),
                            min: p.min().map(AsF64::as_f64),
                            max: p.max().map(AsF64::as_f64),
                            bounds: &bounds,
                            bucket_counts: &counts,
                        },
                        temporality: temporality(h.temporality()),
                    };
                    self.record(&a, Some(h.start_time()), h.time(), d);
                }
            }
            Data::ExponentialHistogram(h) => {
                for p in h.data_points() {
                    let a: Vec<_> = p.attributes().collect();
                    let pos: Vec<u64> = p.positive_bucket().counts().collect();
                    let neg: Vec<u64> = p.negative_bucket().counts().collect();
                    let d = MetricData::ExponentialHistogram {
                        point: ExpHistogramPoint {
                            count: p.count() as u64,
                            sum: Some(p.sum().as_f64()),
                            min: p.min().map(AsF64::as_f64),
                            max: p.max().map(AsF64::as_f64),
                            scale: p.scale() as i32,
                            zero_count: p.zero_count(),
                            zero_threshold: p.zero_threshold(),
                            positive: ExpBuckets {
                                offset: p.positive_bucket().offset(),
                                counts: &pos,
                            },
                            negative: ExpBuckets {
                                offset: p.negative_bucket().offset(),
                                counts: &neg,
                            },
                        },
                        temporality: temporality(h.temporality()),
                    };
                    self.record(&a, Some(h.start_time()), h.time(), d);
                }
            }
        }
    }
}

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for MetricExporter {
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> OTelSdkResult {
        if self.common.pipeline.is_shut_down() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.common.adopt(metrics.resource());
        self.record_all(metrics);
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.common.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.common.shutdown(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.temporality
    }
}
