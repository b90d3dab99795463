//! A `log` logger: every `log` record becomes an OTLP log record, with
//! the level as its severity, the target as its scope, its key-values
//! (`log::info!(order = 7; "...")`) and the module, file and line as
//! attributes (`code.namespace`, and the semantic conventions' stable
//! `code.file.path` and `code.line.number`, as the Python bindings name
//! them), and (with the `tracing` feature and layer) the current
//! `tracing` span's trace context.
//!
//! ```no_run
//! # let pipeline = otlpflow::Pipeline::builder().start().unwrap();
//! otlpflow::log::init(&pipeline, log::LevelFilter::Info).unwrap();
//! log::warn!(target: "shop", "stock low for {}", "A-17");
//! ```

use std::fmt::Write as _;

use super::Scopes;
use crate::clock::now_unix_nano;
use crate::engine::Pipeline;
use crate::record::{KeyValue, LogRecord, OwnedValue, Severity, Value};

/// A `log::Log` recording into an otlpflow pipeline.
pub struct OtlpLogger {
    pipeline: Pipeline,
    scopes: Scopes,
    level: ::log::LevelFilter,
}

impl OtlpLogger {
    /// A logger over `pipeline` for records at `level` and above.
    pub fn new(pipeline: &Pipeline, level: ::log::LevelFilter) -> OtlpLogger {
        OtlpLogger {
            scopes: Scopes::new(pipeline),
            pipeline: pipeline.clone(),
            level,
        }
    }
}

/// Installs an [`OtlpLogger`] as the process's `log` logger and sets the
/// maximum level. Fails if a logger is installed already.
pub fn init(pipeline: &Pipeline, level: ::log::LevelFilter) -> Result<(), ::log::SetLoggerError> {
    // The logger lives as long as the process (as `log` requires).
    ::log::set_logger(Box::leak(Box::new(OtlpLogger::new(pipeline, level))))?;
    ::log::set_max_level(level);
    Ok(())
}

fn severity(level: ::log::Level) -> Severity {
    match level {
        ::log::Level::Trace => Severity::TRACE,
        ::log::Level::Debug => Severity::DEBUG,
        ::log::Level::Info => Severity::INFO,
        ::log::Level::Warn => Severity::WARN,
        ::log::Level::Error => Severity::ERROR,
    }
}

/// A `'static` target name for the scope table: `log` targets are usually
/// static module paths; any other is kept once per distinct name.
fn static_target(target: &str) -> &'static str {
    use parking_lot::Mutex;
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock();
    if let Some(t) = seen.iter().find(|t| **t == target) {
        return t;
    }
    if seen.len() >= super::MAX_SCOPES {
        return "otlpflow.overflow";
    }
    let t: &'static str = Box::leak(target.to_owned().into_boxed_str());
    seen.push(t);
    t
}

impl ::log::Log for OtlpLogger {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        // otlpflow's own threads' records are not exported (see `threads`).
        metadata.level() <= self.level && !crate::threads::is_own()
    }

    fn log(&self, record: &::log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = now_unix_nano();
        let mut body = String::new();
        let _ = write!(body, "{}", record.args());
        let mut attrs = Vec::with_capacity(3);
        if let Some(m) = record.module_path() {
            attrs.push(KeyValue::new("code.namespace", Value::Str(m)));
        }
        if let Some(f) = record.file() {
            attrs.push(KeyValue::new("code.file.path", Value::Str(f)));
        }
        if let Some(l) = record.line() {
            attrs.push(KeyValue::new("code.line.number", Value::I64(l as i64)));
        }
        let mut pairs = Pairs::default();
        let _ = record.key_values().visit(&mut pairs);
        attrs.extend(
            pairs
                .kept
                .iter()
                .filter_map(|(k, v)| Some(KeyValue::new(k, v.scalar()?))),
        );
        #[cfg(feature = "tracing")]
        let (trace_id, span_id) = super::tracing::current_context()
            .map_or(([0; 16], [0; 8]), |c| (c.trace_id, c.span_id));
        #[cfg(not(feature = "tracing"))]
        let (trace_id, span_id) = ([0u8; 16], [0u8; 8]);
        let log = LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: severity(record.level()),
            severity_text: record.level().as_str(),
            body: Some(Value::Str(&body)),
            attributes: &attrs,
            dropped_attributes_count: pairs.dropped,
            trace_id,
            span_id,
            ..Default::default()
        };
        let scope = self
            .scopes
            .get(&self.pipeline, static_target(record.target()));
        // A refusal is counted by the pipeline, by reason.
        let _ = self.pipeline.record_log(&scope, &log);
    }

    fn flush(&self) {}
}

/// The most key-values kept from one record (as the `tracing` bridge keeps
/// fields); past them, counted in `dropped_attributes_count`.
const MAX_PAIRS: usize = 32;
/// The most bytes of text kept from one value (a longer one is cut at a
/// character boundary, as the `tracing` bridge cuts its text).
const MAX_TEXT: usize = 1024;

/// A record's key-values, owned for the time of the call (scalars only).
#[derive(Default)]
struct Pairs {
    kept: Vec<(String, OwnedValue)>,
    dropped: u32,
}

impl<'kvs> ::log::kv::VisitSource<'kvs> for Pairs {
    fn visit_pair(
        &mut self,
        key: ::log::kv::Key<'kvs>,
        value: ::log::kv::Value<'kvs>,
    ) -> Result<(), ::log::kv::Error> {
        if self.kept.len() >= MAX_PAIRS {
            self.dropped = self.dropped.saturating_add(1);
            return Ok(());
        }
        let v = if let Some(b) = value.to_bool() {
            OwnedValue::Bool(b)
        } else if let Some(i) = value.to_i64() {
            OwnedValue::I64(i)
        } else if let Some(f) = value.to_f64() {
            OwnedValue::F64(f)
        } else if let Some(u) = value.to_u64() {
            // Past i64: a double, as the `tracing` bridge sends a u64.
            OwnedValue::F64(u as f64)
        } else {
            let mut text = match value.to_borrowed_str() {
                Some(s) => s.to_owned(),
                None => value.to_string(),
            };
            if text.len() > MAX_TEXT {
                let mut end = MAX_TEXT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            OwnedValue::Str(text)
        };
        self.kept.push((key.as_str().to_owned(), v));
        Ok(())
    }
}
