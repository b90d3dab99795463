//! The report a run prints: offered, accepted, exported, losses by reason,
//! what the receiver counted, throughput and latency; as text or JSON.

use std::time::Duration;

use otlpflow::sink::SinkCounts;
use otlpflow::Stats;

use crate::args::SignalArg;

#[derive(serde::Serialize)]
pub(crate) struct Report {
    pub(crate) offered: u64,
    pub(crate) accepted: u64,
    pub(crate) exported: u64,
    pub(crate) dropped: u64,
    pub(crate) dropped_by_reason: otlpflow::Dropped,
    pub(crate) failed: u64,
    pub(crate) failed_by_reason: otlpflow::Failed,
    pub(crate) rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) throttled_by_receiver: Option<u64>,
    /// Kept for scripts written against traces; equal to records_per_sec.
    pub(crate) spans_per_sec: f64,
    pub(crate) records_per_sec: f64,
    pub(crate) signal: &'static str,
    pub(crate) elapsed_s: f64,
    pub(crate) raw_bytes: u64,
    pub(crate) wire_bytes: u64,
    pub(crate) compression_ratio: f64,
    pub(crate) requests: u64,
    pub(crate) retries: u64,
    pub(crate) batch_target: u64,
    pub(crate) concurrency_limit: u64,
    pub(crate) memory_peak_bytes: u64,
    pub(crate) breaker_opened: u64,
    export_latency_p50_ms: f64,
    export_latency_p99_ms: f64,
    e2e_latency_p50_ms: f64,
    e2e_latency_p99_ms: f64,
    pub(crate) last_error: Option<String>,
}

/// What the receiver counted of this signal.
pub(crate) fn received_of(c: &SinkCounts, signal: SignalArg) -> u64 {
    match signal {
        SignalArg::Traces => c.spans,
        SignalArg::Logs => c.logs,
        SignalArg::Metrics => c.metric_points,
    }
}

pub(crate) fn make_report(
    s: &Stats,
    elapsed: Duration,
    received: Option<SinkCounts>,
    signal: SignalArg,
    last_error: Option<String>,
) -> Report {
    let secs = elapsed.as_secs_f64();
    Report {
        offered: s.offered,
        accepted: s.accepted,
        exported: s.exported,
        dropped: s.dropped.total(),
        dropped_by_reason: s.dropped,
        failed: s.failed.total(),
        failed_by_reason: s.failed,
        rejected: s.rejected,
        received: received.map(|r| received_of(&r, signal)),
        signal: match signal {
            SignalArg::Traces => "traces",
            SignalArg::Logs => "logs",
            SignalArg::Metrics => "metrics",
        },
        throttled_by_receiver: received.map(|r| r.throttled),
        spans_per_sec: s.exported as f64 / secs,
        records_per_sec: s.exported as f64 / secs,
        elapsed_s: secs,
        raw_bytes: s.bytes_raw,
        wire_bytes: s.bytes_wire,
        compression_ratio: if s.bytes_wire == 0 {
            0.0
        } else {
            s.bytes_raw as f64 / s.bytes_wire as f64
        },
        requests: s.requests,
        retries: s.retries,
        batch_target: s.batch_target,
        concurrency_limit: s.concurrency_limit,
        memory_peak_bytes: s.memory_peak,
        breaker_opened: s.breaker_opened,
        export_latency_p50_ms: s.export_latency.p50_ns as f64 / 1e6,
        export_latency_p99_ms: s.export_latency.p99_ns as f64 / 1e6,
        e2e_latency_p50_ms: s.e2e_latency.p50_ns as f64 / 1e6,
        e2e_latency_p99_ms: s.e2e_latency.p99_ns as f64 / 1e6,
        last_error,
    }
}

pub(crate) fn print_report(
    r: &Report,
    s: &Stats,
    received: Option<SinkCounts>,
    signal: SignalArg,
    json: bool,
) {
    if json {
        match serde_json::to_string(r) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("otlpflow: report: {e}"),
        }
        return;
    }
    println!("otlpflow {}", otlpflow::VERSION);
    println!("  offered            {:>14}", r.offered);
    println!("  accepted           {:>14}", r.accepted);
    println!("  exported           {:>14}", r.exported);
    let by_reason = |counts: Vec<(&str, u64)>| {
        counts
            .iter()
            .map(|(name, n)| format!("{} {n}", name.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  dropped            {:>14}   ({})",
        r.dropped,
        by_reason(s.dropped.iter().map(|(r, n)| (r.name(), n)).collect())
    );
    println!(
        "  failed             {:>14}   ({})",
        r.failed,
        by_reason(s.failed.iter().map(|(r, n)| (r.name(), n)).collect())
    );
    println!("  rejected by server {:>14}", r.rejected);
    if let Some(c) = received {
        println!(
            "  received (sink)    {:>14}   in {} requests, {} bad",
            received_of(&c, signal),
            c.requests,
            c.errors
        );
    }
    println!("  elapsed            {:>14.3} s", r.elapsed_s);
    println!(
        "  throughput         {:>14.0} {}/s",
        r.records_per_sec,
        match r.signal {
            "logs" => "log records",
            "metrics" => "data points",
            _ => "spans",
        }
    );
    println!(
        "  bytes raw / wire   {:>8.1} MB / {:.1} MB   (ratio {:.2}x)",
        r.raw_bytes as f64 / 1e6,
        r.wire_bytes as f64 / 1e6,
        r.compression_ratio
    );
    println!(
        "  requests           {:>14}   ({} retried)",
        r.requests, r.retries
    );
    println!("  batch target       {:>14}", r.batch_target);
    println!(
        "  concurrency limit  {:>14}   (summed over workers)",
        r.concurrency_limit
    );
    if r.memory_peak_bytes > 0 {
        println!(
            "  memory peak        {:>14.1} MB",
            r.memory_peak_bytes as f64 / 1e6
        );
    }
    if r.breaker_opened > 0 {
        println!("  breaker opened     {:>14}", r.breaker_opened);
    }
    if let Some(t) = r.throttled_by_receiver.filter(|t| *t > 0) {
        println!("  throttled (sink)   {t:>14}");
    }
    println!(
        "  export latency     p50 {:.2} ms   p99 {:.2} ms",
        r.export_latency_p50_ms, r.export_latency_p99_ms
    );
    println!(
        "  end-to-end         p50 {:.2} ms   p99 {:.2} ms   (record to acknowledgement, sampled)",
        r.e2e_latency_p50_ms, r.e2e_latency_p99_ms
    );
    if let Some(e) = &r.last_error {
        println!("  last error         {e}");
    }
}
