//! Instruments and otlpflow's own metrics, collected into OTLP data points
//! that go through the record path like any other record.

use super::Engine;
use crate::record::Signal;

impl Engine {
    /// Records otlpflow's own metrics as OTLP data points through itself
    /// (`PipelineBuilder::self_metrics`), named after the OpenTelemetry
    /// semantic conventions for SDK self-monitoring where one fits.
    pub(super) fn collect_self_metrics(&self) -> u64 {
        use crate::record::{KeyValue, MetricData, MetricPoint, Number, Temporality, Value};
        let scope = *self.self_scope.get_or_init(|| self.own_scope());
        let s = self.stats();
        let now = crate::clock::now_unix_nano();
        let start = self.start_unix_nano;
        let mut n = 0;
        let mut emit = |name: &str, unit: &str, attrs: &[KeyValue<'_>], value: u64, sum: bool| {
            let data = if sum {
                MetricData::Sum {
                    value: Number::I64(value as i64),
                    monotonic: true,
                    temporality: Temporality::Cumulative,
                }
            } else {
                MetricData::Gauge(Number::I64(value as i64))
            };
            let p = MetricPoint {
                name,
                description: "",
                unit,
                attribute_set: None,
                attributes: attrs,
                start_time_unix_nano: if sum { start } else { 0 },
                time_unix_nano: now,
                flags: 0,
                data,
            };
            let len = p.encoded_len();
            n += self
                .record_with(&scope, Signal::Metrics, len, |b| p.encode(b))
                .is_ok() as u64;
        };
        let component = KeyValue::new("otel.component.type", Value::Str("otlpflow"));
        for signal in Signal::ALL {
            let (kind, unit) = match signal {
                Signal::Traces => ("span", "{span}"),
                Signal::Logs => ("log", "{log_record}"),
                Signal::Metrics => ("metric_data_point", "{data_point}"),
            };
            let processed = format!("otel.sdk.processor.{kind}.processed");
            let exported = format!("otel.sdk.exporter.{kind}.exported");
            emit(
                &processed,
                unit,
                &[component],
                s.accepted_by_signal[signal],
                true,
            );
            emit(
                &exported,
                unit,
                &[component],
                s.exported_by_signal[signal],
                true,
            );
        }
        // Refusals and failures are not kept per signal: one otlpflow
        // metric each, by reason (`error.type`), as the conventions name it.
        let dropped = s.dropped.iter().map(|(r, n)| (r.name(), n));
        for (reason, v) in dropped {
            let attrs = [component, KeyValue::new("error.type", Value::Str(reason))];
            emit("otlpflow.records.dropped", "{record}", &attrs, v, true);
        }
        let failed = s.failed.iter().map(|(r, n)| (r.name(), n));
        for (reason, v) in failed.chain([("rejected", s.rejected)]) {
            let attrs = [component, KeyValue::new("error.type", Value::Str(reason))];
            emit("otlpflow.records.failed", "{record}", &attrs, v, true);
        }
        emit(
            "otlpflow.records.in_flight",
            "{record}",
            &[component],
            s.in_flight,
            false,
        );
        emit(
            "otlpflow.export.requests",
            "{request}",
            &[component],
            s.requests,
            true,
        );
        emit(
            "otlpflow.export.concurrency_limit",
            "{request}",
            &[component],
            s.concurrency_limit,
            false,
        );
        emit(
            "otlpflow.export.latency.p99",
            "ns",
            &[component],
            s.export_latency.p99_ns,
            false,
        );
        emit(
            "otlpflow.end_to_end.latency.p99",
            "ns",
            &[component],
            s.e2e_latency.p99_ns,
            false,
        );
        emit(
            "otlpflow.ring.fill.max",
            "%",
            &[component],
            s.ring_fill_max_pct,
            false,
        );
        emit(
            "otlpflow.memory.used",
            "By",
            &[component],
            s.memory_used,
            false,
        );
        n
    }

    /// Collects the instruments into data points through the record path.
    pub(super) fn collect_metrics(&self) -> u64 {
        let _one = self.collect_lock.lock();
        let instruments = self.instruments.read().list().to_vec();
        let mut n = 0;
        if self.config.self_metrics {
            n += self.collect_self_metrics();
        }
        for i in &instruments {
            i.collect(self.config.temporality, &mut |point, attrs| {
                let len = point.encoded_len();
                let r = self.record_with(&i.scope, Signal::Metrics, len + attrs.len(), |buf| {
                    point.encode(&mut buf[..len]);
                    // The series' attributes, already encoded, close the
                    // data point (protobuf fields may come in any order).
                    buf[len..].copy_from_slice(attrs);
                });
                n += r.is_ok() as u64;
            });
        }
        n
    }
}
