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
    spooled: u64,
    spool: otlpflow::SpoolStats,
    export_latency_p50_ms: f64,
    export_latency_p99_ms: f64,
    e2e_latency_p50_ms: f64,
    e2e_latency_p99_ms: f64,
    export_latency_ms: Spread,
    e2e_latency_ms: Spread,
    bytes_per_sec: f64,
    requests_per_sec: f64,
    /// Records lost per second of the run, by reason.
    loss_per_sec: std::collections::BTreeMap<&'static str, f64>,
    pub(crate) last_error: Option<String>,
}

/// Minimum, mean and maximum of a latency, in milliseconds.
#[derive(serde::Serialize)]
struct Spread {
    min: f64,
    mean: f64,
    max: f64,
}

impl Spread {
    fn of(l: &otlpflow::Latency) -> Spread {
        Spread {
            min: l.min_ns as f64 / 1e6,
            mean: l.mean_ns as f64 / 1e6,
            max: l.max_ns as f64 / 1e6,
        }
    }
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
        spooled: s.spooled,
        spool: s.spool,
        export_latency_p50_ms: s.export_latency.p50_ns as f64 / 1e6,
        export_latency_p99_ms: s.export_latency.p99_ns as f64 / 1e6,
        e2e_latency_p50_ms: s.e2e_latency.p50_ns as f64 / 1e6,
        e2e_latency_p99_ms: s.e2e_latency.p99_ns as f64 / 1e6,
        export_latency_ms: Spread::of(&s.export_latency),
        e2e_latency_ms: Spread::of(&s.e2e_latency),
        bytes_per_sec: s.bytes_wire as f64 / secs,
        requests_per_sec: s.requests as f64 / secs,
        loss_per_sec: s
            .dropped
            .iter()
            .map(|(r, n)| (r.name(), n))
            .chain(s.failed.iter().map(|(r, n)| (r.name(), n)))
            .filter(|(_, n)| *n > 0)
            .fold(Default::default(), |mut m, (name, n)| {
                *m.entry(name).or_insert(0.0) += n as f64 / secs;
                m
            }),
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
        "  rates              {:>14.1} MB/s on the wire, {:.0} requests/s",
        r.bytes_per_sec / 1e6,
        r.requests_per_sec
    );
    if !r.loss_per_sec.is_empty() {
        let losses: Vec<String> = r
            .loss_per_sec
            .iter()
            .map(|(name, v)| format!("{} {v:.0}/s", name.replace('_', " ")))
            .collect();
        println!("  loss rate          {:>14}", losses.join(", "));
    }
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
    if r.spooled > 0 || r.spool.replayed > 0 || r.spool.errors > 0 {
        println!(
            "  spool              {:>14}   spooled, {} replayed, {} corrupt, {} dropped full, {} errors",
            r.spooled, r.spool.replayed, r.spool.corrupt, r.spool.dropped_full, r.spool.errors
        );
    }
    if let Some(t) = r.throttled_by_receiver.filter(|t| *t > 0) {
        println!("  throttled (sink)   {t:>14}");
    }
    for (what, p50, p99, spread, note) in [
        (
            "export latency",
            r.export_latency_p50_ms,
            r.export_latency_p99_ms,
            &r.export_latency_ms,
            "",
        ),
        (
            "end-to-end    ",
            r.e2e_latency_p50_ms,
            r.e2e_latency_p99_ms,
            &r.e2e_latency_ms,
            "   (record to acknowledgement, sampled)",
        ),
    ] {
        println!(
            "  {what}     p50 {p50:.2} ms   p99 {p99:.2} ms   min {:.2} / mean {:.2} / max {:.2} ms{note}",
            spread.min, spread.mean, spread.max
        );
    }
    if let Some(e) = &r.last_error {
        println!("  last error         {e}");
    }
}
