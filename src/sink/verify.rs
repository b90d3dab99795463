//! Checking a request: the opentelemetry-proto decode (`Verify::Full`), or
//! the allocation-free walk with a sampled full decode (`Verify::Walk`).
//! Either returns the request's number of records or says what is wrong.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::SinkState;
use crate::record::Signal;

/// How the sink checks requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Decode every request with prost.
    Full,
    /// Walk every request; fully decode one in `sample_every`.
    Walk {
        /// Decode one request in this many (at least 1).
        sample_every: u64,
    },
}

/// Decodes a request with the opentelemetry-proto types, checks it, and
/// returns its number of records (spans, log records, data points).
pub(super) fn decode_full(
    message: &[u8],
    signal: Signal,
    keep: Option<&SinkState>,
) -> Result<u64, String> {
    match signal {
        Signal::Traces => decode_traces(message, keep),
        Signal::Logs => decode_logs(message, keep),
        Signal::Metrics => decode_metrics(message, keep),
    }
}

fn decode_logs(message: &[u8], keep: Option<&SinkState>) -> Result<u64, String> {
    let req = ExportLogsServiceRequest::decode(message)
        .map_err(|e| format!("ExportLogsServiceRequest: {e}"))?;
    let mut n = 0u64;
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for l in &sl.log_records {
                if !matches!(l.trace_id.len(), 0 | 16) || !matches!(l.span_id.len(), 0 | 8) {
                    return Err("log record with invalid trace or span id".into());
                }
                if !(0..=24).contains(&l.severity_number) {
                    return Err(format!("severity number {}", l.severity_number));
                }
            }
            n += sl.log_records.len() as u64;
        }
    }
    if let Some(k) = keep {
        k.kept_logs.lock().push(req);
    }
    Ok(n)
}

fn decode_metrics(message: &[u8], keep: Option<&SinkState>) -> Result<u64, String> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let req = ExportMetricsServiceRequest::decode(message)
        .map_err(|e| format!("ExportMetricsServiceRequest: {e}"))?;
    let mut n = 0u64;
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            let mut names = std::collections::HashSet::new();
            for m in &sm.metrics {
                if m.name.is_empty() {
                    return Err("metric without a name".into());
                }
                // A scope carries each metric once, with all its points.
                if !names.insert((
                    &m.name,
                    &m.unit,
                    &m.description,
                    m.data.as_ref().map(std::mem::discriminant),
                )) {
                    return Err(format!("metric {} appears twice in one scope", m.name));
                }
                n += match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            if !p.explicit_bounds.is_empty()
                                && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                            {
                                return Err(format!(
                                    "histogram {}: buckets and bounds disagree",
                                    m.name
                                ));
                            }
                            if p.bucket_counts.iter().sum::<u64>() != p.count {
                                return Err(format!(
                                    "histogram {}: count is not the buckets' sum",
                                    m.name
                                ));
                            }
                        }
                        h.data_points.len()
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let buckets: u64 = [&p.positive, &p.negative]
                                .iter()
                                .filter_map(|b| b.as_ref())
                                .flat_map(|b| b.bucket_counts.iter())
                                .sum();
                            if buckets + p.zero_count != p.count {
                                return Err(format!("exponential histogram {}: count is not zero_count plus the buckets", m.name));
                            }
                        }
                        h.data_points.len()
                    }
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => return Err(format!("metric {} has no data", m.name)),
                } as u64;
            }
        }
    }
    if let Some(k) = keep {
        k.kept_metrics.lock().push(req);
    }
    Ok(n)
}

fn decode_traces(message: &[u8], keep: Option<&SinkState>) -> Result<u64, String> {
    let req = ExportTraceServiceRequest::decode(message)
        .map_err(|e| format!("ExportTraceServiceRequest: {e}"))?;
    let mut spans = 0u64;
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                if s.trace_id.len() != 16 || s.span_id.len() != 8 {
                    return Err("span with invalid trace or span id".into());
                }
            }
            spans += ss.spans.len() as u64;
        }
    }
    if let Some(k) = keep {
        k.kept.lock().push(req);
    }
    Ok(spans)
}
