//! The Prometheus text endpoint: the same numbers as [`crate::Stats`], with
//! conventional names and units, served on `GET /metrics` by a small HTTP/1.1
//! server on its own thread (off by default; `PipelineBuilder::prometheus`).
//! Reading the counters never stops or locks the data path.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;

use crate::stats::{EndpointStats, Health, Stats};

/// Borrows owned label strings as the `metric` helper takes them.
fn labelled(v: &[(String, u64)]) -> Vec<(&str, u64)> {
    v.iter().map(|(l, n)| (l.as_str(), *n)).collect()
}

/// What one scrape shows: the counters, the health, each shard ring's fill
/// and each endpoint's counts.
pub struct Scrape {
    /// The counters.
    pub stats: Stats,
    /// The health.
    pub health: Health,
    /// Each shard ring's fill, 0 to 1.
    pub ring_fill: Vec<f64>,
    /// Each endpoint of each signal.
    pub endpoints: Vec<EndpointStats>,
}

/// Renders a scrape in the Prometheus text exposition format (0.0.4).
pub fn render(scrape: &Scrape) -> String {
    let (s, health, ring_fill) = (&scrape.stats, scrape.health, &scrape.ring_fill[..]);
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    };
    metric(
        "otlpflow_records_offered_total",
        "counter",
        "Records the host tried to record.",
        &[("", s.offered)],
    );
    metric(
        "otlpflow_records_accepted_total",
        "counter",
        "Records taken into a ring.",
        &[("", s.accepted)],
    );
    let dropped: Vec<(String, u64)> = s
        .dropped
        .iter()
        .map(|(r, n)| (format!("reason=\"{}\"", r.name()), n))
        .collect();
    let failed: Vec<(String, u64)> = s
        .failed
        .iter()
        .map(|(r, n)| (format!("reason=\"{}\"", r.name()), n))
        .collect();
    metric(
        "otlpflow_records_dropped_total",
        "counter",
        "Records refused at ingest, by reason.",
        &labelled(&dropped),
    );
    metric(
        "otlpflow_records_exported_total",
        "counter",
        "Records acknowledged by the receiver.",
        &[("", s.exported)],
    );
    metric(
        "otlpflow_records_failed_total",
        "counter",
        "Records whose export failed for good, by reason.",
        &labelled(&failed),
    );
    metric(
        "otlpflow_records_rejected_total",
        "counter",
        "Records the receiver rejected (partial success).",
        &[("", s.rejected)],
    );
    metric(
        "otlpflow_measurements_dropped_total",
        "counter",
        "Measurements dropped: histograms' NaN or infinite values, counters' adds past i64::MAX.",
        &[("", s.dropped_measurements)],
    );
    metric(
        "otlpflow_scopes_overflowed_total",
        "counter",
        "Instrumentation scopes answered with otlpflow.overflow because max_scopes were registered.",
        &[("", s.scopes_overflowed)],
    );
    metric(
        "otlpflow_records_in_flight",
        "gauge",
        "Records accepted and not yet exported, failed or rejected.",
        &[("", s.in_flight)],
    );
    metric(
        "otlpflow_export_requests_total",
        "counter",
        "Export requests sent, retries included.",
        &[("", s.requests)],
    );
    metric(
        "otlpflow_export_retries_total",
        "counter",
        "Export requests retried.",
        &[("", s.retries)],
    );
    metric(
        "otlpflow_export_request_errors_total",
        "counter",
        "Export attempts that failed.",
        &[("", s.request_errors)],
    );
    metric(
        "otlpflow_export_requests_in_flight",
        "gauge",
        "Export requests in flight.",
        &[("", s.in_flight_requests)],
    );
    metric(
        "otlpflow_export_bytes_total",
        "counter",
        "Bytes exported: the OTLP message (raw) and on the wire (compressed, framed).",
        &[
            ("kind=\"raw\"", s.bytes_raw),
            ("kind=\"wire\"", s.bytes_wire),
        ],
    );
    metric(
        "otlpflow_ring_bytes_used",
        "gauge",
        "Bytes waiting in the shard rings.",
        &[("", s.ring_bytes_used)],
    );
    metric(
        "otlpflow_batch_target_records",
        "gauge",
        "The batch target, averaged over workers.",
        &[("", s.batch_target)],
    );
    metric(
        "otlpflow_export_concurrency_limit",
        "gauge",
        "The limit on export requests in flight, summed over workers.",
        &[("", s.concurrency_limit)],
    );
    metric(
        "otlpflow_memory_bytes",
        "gauge",
        "Bytes held against the memory budget: now, and the peak.",
        &[
            ("kind=\"used\"", s.memory_used),
            ("kind=\"peak\"", s.memory_peak),
        ],
    );
    metric(
        "otlpflow_circuit_breaker_opened_total",
        "counter",
        "Times a worker's circuit breaker opened.",
        &[("", s.breaker_opened)],
    );
    metric(
        "otlpflow_health",
        "gauge",
        "Export path health: 0 healthy, 1 degraded, 2 down.",
        &[("", health as u64)],
    );
    let _ = writeln!(
        out,
        "# HELP otlpflow_ring_fill_ratio Fill of each shard ring, 0 to 1."
    );
    let _ = writeln!(out, "# TYPE otlpflow_ring_fill_ratio gauge");
    for (i, f) in ring_fill.iter().enumerate() {
        let _ = writeln!(out, "otlpflow_ring_fill_ratio{{shard=\"{i}\"}} {f}");
    }
    for (name, help, l) in [
        (
            "otlpflow_export_latency_seconds",
            "Export round-trip latency.",
            &s.export_latency,
        ),
        (
            "otlpflow_end_to_end_latency_seconds",
            "From a record's commit to its acknowledgement (sampled).",
            &s.e2e_latency,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} summary");
        for (q, v) in [
            ("0.5", l.p50_ns),
            ("0.9", l.p90_ns),
            ("0.99", l.p99_ns),
            ("0.999", l.p999_ns),
        ] {
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", v as f64 / 1e9);
        }
        let sum = l.mean_ns as f64 * l.count as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", l.count);
        let _ = writeln!(
            out,
            "# HELP {name}_stat {help} Minimum, mean and maximum since start."
        );
        let _ = writeln!(out, "# TYPE {name}_stat gauge");
        for (stat, v) in [("min", l.min_ns), ("mean", l.mean_ns), ("max", l.max_ns)] {
            let _ = writeln!(out, "{name}_stat{{stat=\"{stat}\"}} {}", v as f64 / 1e9);
        }
    }
    rates(&mut out, s);
    endpoints(&mut out, &scrape.endpoints);
    spool(&mut out, s);
    out
}

/// The disk spool's counts (zeros without one).
fn spool(out: &mut String, s: &Stats) {
    let sp = &s.spool;
    for (name, kind, help, v) in [
        (
            "otlpflow_spool_bytes",
            "gauge",
            "Bytes in the disk spool's segments.",
            sp.bytes,
        ),
        (
            "otlpflow_spool_records_written_total",
            "counter",
            "Records this process wrote to the disk spool.",
            s.spooled,
        ),
        (
            "otlpflow_spool_records_replayed_total",
            "counter",
            "Records replayed from the disk spool and acknowledged.",
            sp.replayed,
        ),
        (
            "otlpflow_spool_requests_corrupt_total",
            "counter",
            "Spooled requests found corrupt and skipped.",
            sp.corrupt,
        ),
        (
            "otlpflow_spool_records_dropped_total",
            "counter",
            "Records dropped with the oldest segment of a full spool.",
            sp.dropped_full,
        ),
        (
            "otlpflow_spool_records_failed_total",
            "counter",
            "Replayed records the receiver refused for good.",
            sp.failed,
        ),
        (
            "otlpflow_spool_errors_total",
            "counter",
            "Spool writes and reads that failed.",
            sp.errors,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {v}");
    }
}

/// Per endpoint of each signal (a collector fleet), labelled with the
/// signal and the endpoint's `host:port`.
fn endpoints(out: &mut String, list: &[EndpointStats]) {
    for (name, kind, help, value) in [
        (
            "otlpflow_endpoint_records_exported_total",
            "counter",
            "Records each endpoint acknowledged.",
            (|e| e.exported) as fn(&EndpointStats) -> u64,
        ),
        (
            "otlpflow_endpoint_requests_total",
            "counter",
            "Requests sent to each endpoint, retries included.",
            |e| e.requests,
        ),
        (
            "otlpflow_endpoint_request_errors_total",
            "counter",
            "Attempts to each endpoint that failed.",
            |e| e.request_errors,
        ),
        (
            "otlpflow_endpoint_records_failed_total",
            "counter",
            "Records failed for good on their way to each endpoint.",
            |e| e.failed,
        ),
        (
            "otlpflow_endpoint_breaker_open",
            "gauge",
            "1 while some worker's circuit breaker for the endpoint is open or probing.",
            |e| e.breaker_open as u64,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for e in list {
            let _ = writeln!(
                out,
                "{name}{{signal=\"{}\",endpoint=\"{}\"}} {}",
                e.signal.name(),
                label(&e.endpoint),
                value(e)
            );
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The per-second rates, since start and over the last interval.
fn rates(out: &mut String, s: &Stats) {
    let windows = [("start", &s.rates_since_start), ("last", &s.rates_last)];
    let _ = writeln!(
        out,
        "# HELP otlpflow_rate_per_second Records, bytes and requests per second, since start and over the last interval."
    );
    let _ = writeln!(out, "# TYPE otlpflow_rate_per_second gauge");
    for (window, r) in windows {
        for (what, v) in [
            ("records_offered", r.offered),
            ("records_exported", r.exported),
            ("bytes_raw", r.bytes_raw),
            ("bytes_wire", r.bytes_wire),
            ("requests", r.requests),
            ("request_errors", r.request_errors),
        ] {
            let _ = writeln!(
                out,
                "otlpflow_rate_per_second{{window=\"{window}\",what=\"{what}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP otlpflow_loss_rate_per_second Records lost per second by reason (dropped at ingest, failed after), since start and over the last interval."
    );
    let _ = writeln!(out, "# TYPE otlpflow_loss_rate_per_second gauge");
    for (window, r) in windows {
        for (reason, v) in r.dropped.iter() {
            let name = reason.name();
            let _ = writeln!(
                out,
                "otlpflow_loss_rate_per_second{{window=\"{window}\",kind=\"dropped\",reason=\"{name}\"}} {v}"
            );
        }
        for (reason, v) in r.failed.iter() {
            let name = reason.name();
            let _ = writeln!(
                out,
                "otlpflow_loss_rate_per_second{{window=\"{window}\",kind=\"failed\",reason=\"{name}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP otlpflow_uptime_seconds Time since the pipeline started."
    );
    let _ = writeln!(out, "# TYPE otlpflow_uptime_seconds gauge");
    let _ = writeln!(out, "otlpflow_uptime_seconds {}", s.uptime_ms as f64 / 1e3);
}

/// A running endpoint; stopping it (or dropping it) ends its thread.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `GET /metrics` on `addr`, rendering what `snapshot` returns
    /// (`None` once the pipeline is gone).
    pub fn start(
        addr: SocketAddr,
        snapshot: impl Fn() -> Option<Scrape> + Send + Sync + 'static,
    ) -> std::io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let snapshot = Arc::new(snapshot);
        let open = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("otlpflow-prometheus".into())
            .spawn(move || {
                crate::threads::mark_own();
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = rx.changed() => return,
                            accepted = listener.accept() => {
                                let Ok((tcp, _)) = accepted else { continue };
                                // A scrape endpoint needs few connections:
                                // more than the cap are closed at once.
                                if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                                    continue;
                                }
                                open.fetch_add(1, Ordering::Relaxed);
                                let (snapshot, open) = (snapshot.clone(), open.clone());
                                tokio::spawn(async move {
                                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                                        let snapshot = snapshot.clone();
                                        async move { Ok::<_, std::convert::Infallible>(respond(req.method(), req.uri().path(), &*snapshot)) }
                                    });
                                    // Half-sent requests are dropped after
                                    // the header timeout.
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .timer(hyper_util::rt::TokioTimer::new())
                                        .header_read_timeout(HEADER_TIMEOUT)
                                        .max_buf_size(16 << 10)
                                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                                        .await;
                                    open.fetch_sub(1, Ordering::Relaxed);
                                });
                            }
                        }
                    }
                });
            })?;
        Ok(Server {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits for its thread, unless called from that
    /// very thread (the last handle of a pipeline dropped while rendering).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a client may take to send a request head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// Answers `GET` (and `HEAD`) `/metrics`; any other method is 405.
fn respond(
    method: &http::Method,
    path: &str,
    snapshot: &dyn Fn() -> Option<Scrape>,
) -> http::Response<Full<Bytes>> {
    let head = method == http::Method::HEAD;
    let (status, body) = if !head && method != http::Method::GET {
        (405, "use GET\n".to_owned())
    } else {
        match (path, snapshot()) {
            ("/metrics", Some(scrape)) => (200, render(&scrape)),
            ("/metrics", None) => (503, "the pipeline is gone\n".to_owned()),
            _ => (404, "try /metrics\n".to_owned()),
        }
    };
    let mut b = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4");
    if status == 405 {
        b = b.header(http::header::ALLOW, "GET, HEAD");
    }
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    b.body(Full::new(body))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}
