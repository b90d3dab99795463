//! The SDK's log processor: each `SdkLogRecord` straight into the ring.

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::SdkLogRecord;
use std::time::Duration;

use super::any_value::{Layout, Values};
use super::{unix_nanos, Common};
use crate::engine::Pipeline;
use crate::record::{KeyValue, LogRecord, Severity};

/// An `opentelemetry_sdk` log processor recording into a pipeline.
#[derive(Debug)]
pub struct LogProcessor(Common);

impl LogProcessor {
    /// A processor over `pipeline`; `force_flush` waits up to 30 s.
    pub fn new(pipeline: &Pipeline) -> LogProcessor {
        LogProcessor(Common::new(pipeline))
    }
}

impl opentelemetry_sdk::logs::LogProcessor for LogProcessor {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        let attrs_src: Vec<_> = data.attributes_iter().collect();
        // Lists and maps (a structured body, say) go as OTLP arrays and
        // kvlists: laid out first, then built in buffers of their own.
        let mut layout = Layout::default();
        for (_, v) in &attrs_src {
            layout.visit(v);
        }
        if let Some(b) = data.body() {
            layout.visit(b);
        }
        let (mut values, mut entries) = layout.buffers();
        let mut nested = Values::new(&mut values, &mut entries, layout.texts());
        let attrs: Vec<KeyValue<'_>> = attrs_src
            .iter()
            .map(|(k, v)| KeyValue::new(k.as_str(), nested.value(v)))
            .collect();
        let body = data.body().map(|b| nested.value(b));
        let (trace_id, span_id, flags) = data.trace_context().map_or(([0; 16], [0; 8], 0), |c| {
            (
                c.trace_id.to_bytes(),
                c.span_id.to_bytes(),
                c.trace_flags.map_or(0, |f| f.to_u8() as u32),
            )
        });
        let observed = data
            .observed_timestamp()
            .map_or_else(crate::clock::now_unix_nano, unix_nanos);
        let log = LogRecord {
            time_unix_nano: data.timestamp().map_or(0, unix_nanos),
            observed_time_unix_nano: observed,
            severity_number: Severity(data.severity_number().map_or(0, |s| s as u8)),
            severity_text: data.severity_text().unwrap_or(""),
            body,
            attribute_set: None,
            attributes: &attrs,
            dropped_attributes_count: 0,
            flags,
            trace_id,
            span_id,
            event_name: data.event_name().unwrap_or(""),
        };
        let scope = self.0.scope(instrumentation);
        // A refusal is counted by the pipeline, by reason.
        let _ = self.0.pipeline.record_log(&scope, &log);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.adopt(resource);
    }
}
