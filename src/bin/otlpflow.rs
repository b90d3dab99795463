//! The `otlpflow` command: `demo` (the embedded receiver plus producers
//! through the real pipeline), `gen` (producers against any OTLP/gRPC
//! endpoint) and `sink` (the embedded receiver, standalone).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use otlpflow::sink::{Sink, SinkCounts, SinkOptions, Verify};
use otlpflow::{workload, Compression, Pipeline, Policy, Stats};

#[derive(Parser)]
#[command(
    name = "otlpflow",
    version,
    about = "Lock-free, high-throughput OTLP ingestion engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the embedded receiver and push spans through the real pipeline.
    Demo(Load),
    /// Push generated spans to an external OTLP/gRPC endpoint.
    Gen {
        /// The receiver, e.g. http://127.0.0.1:4317.
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        load: Load,
    },
    /// Run the embedded receiver until the duration ends or Ctrl-C.
    Sink {
        /// Address for OTLP/gRPC.
        #[arg(long, default_value = "127.0.0.1:4317")]
        grpc: std::net::SocketAddr,
        /// Address for OTLP/HTTP (HTTP/1.1 and h2c), e.g. 127.0.0.1:4318.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        duration: Option<f64>,
        /// Print the counts as one JSON object.
        #[arg(long)]
        json: bool,
        /// Add this latency to every request.
        #[arg(long, default_value_t = 0.0)]
        latency_ms: f64,
        /// Serve this many requests at once; throttle the rest.
        #[arg(long)]
        max_concurrent: Option<usize>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtocolArg {
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SignalArg {
    Traces,
    Logs,
    Metrics,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Block,
    Drop,
}

#[derive(Args, Clone)]
struct Load {
    /// Spans to record.
    #[arg(long, default_value_t = 1_000_000)]
    spans: u64,
    /// Stop after this many seconds instead (then --spans is a cap only if
    /// given explicitly).
    #[arg(long)]
    duration: Option<f64>,
    /// Offer at most this many spans per second in total (paced).
    #[arg(long)]
    rate: Option<f64>,
    /// Producer threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Grpc)]
    protocol: ProtocolArg,
    /// Use HTTP/2 (h2c) for http/protobuf instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// A header for every export request, as K=V (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Compression of requests.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// What producers do on a full ring.
    #[arg(long, value_enum, default_value_t = PolicyArg::Block)]
    policy: PolicyArg,
    /// Records per batch.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// What to send: spans, log records or metric data points.
    #[arg(long, value_enum, default_value_t = SignalArg::Traces)]
    signal: SignalArg,
    /// Cap on the bytes records hold in the pipeline, e.g. 16M.
    #[arg(long, value_parser = parse_size)]
    memory_budget: Option<u64>,
    /// Export requests in flight per worker: a number, or `adaptive`
    /// (AIMD between 1 and 256).
    #[arg(long, default_value = "4", value_parser = parse_concurrency)]
    concurrency: Concurrency,
    /// Ingest limit in records per second (refusals counted as
    /// rate_limited; --rate paces the producers instead).
    #[arg(long)]
    rate_limit: Option<f64>,
    /// demo only: the receiver adds this latency to every request.
    #[arg(long, default_value_t = 0.0)]
    sink_latency_ms: f64,
    /// demo only: the receiver serves this many requests at once and
    /// throttles the rest (RESOURCE_EXHAUSTED / HTTP 429).
    #[arg(long)]
    sink_max_concurrent: Option<usize>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy)]
enum Concurrency {
    Fixed(usize),
    Adaptive,
}

fn parse_concurrency(s: &str) -> Result<Concurrency, String> {
    if s == "adaptive" {
        return Ok(Concurrency::Adaptive);
    }
    s.parse()
        .map(Concurrency::Fixed)
        .map_err(|_| format!("{s:?} is not a number or `adaptive`"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    otlpflow::parse_bytes(s).ok_or_else(|| format!("{s:?} is not a size like 64M"))
}

#[derive(serde::Serialize)]
struct Report {
    offered: u64,
    accepted: u64,
    exported: u64,
    dropped: u64,
    dropped_by_reason: otlpflow::Dropped,
    failed: u64,
    failed_by_reason: otlpflow::Failed,
    rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    throttled_by_receiver: Option<u64>,
    /// Kept for scripts written against traces; equal to records_per_sec.
    spans_per_sec: f64,
    records_per_sec: f64,
    signal: &'static str,
    elapsed_s: f64,
    raw_bytes: u64,
    wire_bytes: u64,
    compression_ratio: f64,
    requests: u64,
    retries: u64,
    batch_target: u64,
    concurrency_limit: u64,
    memory_peak_bytes: u64,
    breaker_opened: u64,
    export_latency_p50_ms: f64,
    export_latency_p99_ms: f64,
    e2e_latency_p50_ms: f64,
    e2e_latency_p99_ms: f64,
    last_error: Option<String>,
}

/// Prints otlpflow's warnings (loss started and stopped, circuit breaker
/// opened and closed) on stderr, where the report on stdout does not mix
/// with them.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info && m.target().starts_with("otlpflow")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{}: {}", r.level().as_str().to_ascii_lowercase(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn main() -> ExitCode {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(load) => demo(load),
        Command::Gen { endpoint, load } => {
            run_load(&endpoint, &load, None).map(|_| ExitCode::SUCCESS)
        }
        Command::Sink {
            grpc,
            http,
            duration,
            json,
            latency_ms,
            max_concurrent,
        } => sink(
            SinkOptions {
                grpc_addr: grpc,
                http_addr: http,
                verify: Verify::Walk { sample_every: 64 },
                latency: Duration::from_secs_f64(latency_ms.max(0.0) / 1e3),
                max_concurrent,
                ..SinkOptions::default()
            },
            duration,
            json,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("otlpflow: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("header {s:?} is not K=V"))
}

fn demo(load: Load) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 64 },
        http_addr: (load.protocol == ProtocolArg::HttpProtobuf)
            .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        latency: Duration::from_secs_f64(load.sink_latency_ms.max(0.0) / 1e3),
        max_concurrent: load.sink_max_concurrent,
        ..SinkOptions::default()
    })?;
    let endpoint = match load.protocol {
        ProtocolArg::Grpc => sink.endpoint(),
        ProtocolArg::HttpProtobuf => sink
            .http_endpoint()
            .ok_or("the sink has no OTLP/HTTP port")?,
    };
    let report = run_load(&endpoint, &load, Some(&sink))?;
    let counts = sink.stop();
    let received = received_of(&counts, load.signal);
    if received != report.exported || counts.errors != 0 {
        eprintln!(
            "otlpflow demo: MISMATCH: receiver counted {} records ({} bad requests), pipeline exported {}",
            received, counts.errors, report.exported
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_load(
    endpoint: &str,
    load: &Load,
    sink: Option<&Sink>,
) -> Result<Report, Box<dyn std::error::Error>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = load.threads.unwrap_or(cpus).max(1);
    let compression = match load.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
    };
    let policy = match load.policy {
        PolicyArg::Block => Policy::Block {
            max_wait: Duration::from_secs(30),
        },
        PolicyArg::Drop => Policy::DropNewest,
    };
    let mut builder = Pipeline::builder()
        .endpoint(endpoint)
        .service_name("otlpflow-demo")
        .resource_attribute(
            "service.instance.id",
            format!("otlpflow-{}", std::process::id()),
        )
        .compression(compression)
        .policy(policy)
        .max_batch_items(load.batch)
        .protocol(match load.protocol {
            ProtocolArg::Grpc => otlpflow::Protocol::Grpc,
            ProtocolArg::HttpProtobuf => otlpflow::Protocol::HttpProtobuf,
        })
        .http_version(if load.http2 {
            otlpflow::HttpVersion::Http2
        } else {
            otlpflow::HttpVersion::Http1
        });
    for (k, v) in &load.headers {
        builder = builder.header(k, v);
    }
    if let Some(w) = load.workers {
        builder = builder.workers(w);
    }
    if let Some(b) = load.memory_budget {
        builder = builder.memory_budget(b);
    }
    if let Some(r) = load.rate_limit {
        builder = builder.rate_limit(r, r.ceil().max(1.0) as u64);
    }
    builder = match load.concurrency {
        Concurrency::Fixed(n) => builder.max_in_flight(n),
        Concurrency::Adaptive => builder.adaptive_concurrency(1, 256),
    };
    let pipeline = builder.start()?;
    let scope = pipeline.scope("otlpflow.demo", otlpflow::VERSION);

    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let spans = if load.duration.is_some() && load.spans == 1_000_000 {
        u64::MAX
    } else {
        load.spans
    };
    let monitor = spawn_progress(pipeline.clone(), spans, done.clone(), load.json);
    let per_thread = spans / threads as u64;
    let extra = spans % threads as u64;
    let deadline = load.duration.map(|d| started + Duration::from_secs_f64(d));
    // Each thread's share of the rate, as the interval between its spans.
    let interval = load
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(threads as f64 / r));
    let signal = load.signal;
    let producers: Vec<_> = (0..threads)
        .map(|t| {
            let p = pipeline.clone();
            let n = per_thread + u64::from((t as u64) < extra);
            std::thread::spawn(move || {
                let seed = workload::splitmix(t as u64 + 1);
                let mut now = workload::now_unix_nano();
                let t0 = Instant::now();
                for i in 0..n {
                    if i % 64 == 0 {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        now = workload::now_unix_nano();
                    }
                    if let Some(iv) = interval {
                        // Pace: span i is due at t0 + i * interval.
                        let due = t0 + iv.mul_f64(i as f64);
                        let now_i = Instant::now();
                        if due > now_i {
                            std::thread::sleep(due - now_i);
                        }
                    }
                    // Refusals are counted by the pipeline and reported below.
                    let _ = match signal {
                        SignalArg::Traces => {
                            workload::record_benchmark_span(&p, &scope, seed, i, now)
                        }
                        SignalArg::Logs => workload::record_benchmark_log(&p, &scope, seed, i, now),
                        SignalArg::Metrics => workload::record_benchmark_point(&p, &scope, i, now),
                    };
                }
            })
        })
        .collect();
    for p in producers {
        p.join().map_err(|_| "a producer thread panicked")?;
    }
    let stats = pipeline.shutdown(Duration::from_secs(60))?;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    let received = sink.map(|s| s.counts());
    let report = make_report(
        &stats,
        elapsed,
        received,
        load.signal,
        pipeline.last_error(),
    );
    print_report(&report, &stats, received, load.signal, load.json);
    Ok(report)
}

fn spawn_progress(
    p: Pipeline,
    total: u64,
    done: Arc<AtomicBool>,
    quiet: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(total)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} exported  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut last = (Instant::now(), 0u64, 0u64);
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let s = p.stats();
            let now = Instant::now();
            let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
            let rate = (s.exported - last.1.min(s.exported)) as f64 / dt;
            let mbps = (s.bytes_wire - last.2.min(s.bytes_wire)) as f64 / dt / 1e6;
            last = (now, s.exported, s.bytes_wire);
            bar.set_position(s.exported);
            bar.set_message(format!(
                "{:.0}/s  {:.1} MB/s  dropped {}  in flight {}  concurrency {}  ring {}%  p99 export {:.2} ms, end-to-end {:.2} ms",
                rate,
                mbps,
                s.dropped.total(),
                s.in_flight,
                s.concurrency_limit,
                s.ring_fill_max_pct,
                s.export_latency.p99_ns as f64 / 1e6,
                s.e2e_latency.p99_ns as f64 / 1e6
            ));
        }
        bar.finish_and_clear();
    })
}

/// What the receiver counted of this signal.
fn received_of(c: &SinkCounts, signal: SignalArg) -> u64 {
    match signal {
        SignalArg::Traces => c.spans,
        SignalArg::Logs => c.logs,
        SignalArg::Metrics => c.metric_points,
    }
}

fn make_report(
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

fn print_report(
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

fn sink(
    opts: SinkOptions,
    duration: Option<f64>,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let sink = Sink::start(opts)?;
    eprintln!("otlpflow sink: OTLP/gRPC on {}", sink.addr());
    if let Some(h) = sink.http_endpoint() {
        eprintln!("otlpflow sink: OTLP/HTTP on {h}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to a static atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && !SIGNALLED.load(Ordering::Relaxed) {
        if duration.is_some_and(|d| started.elapsed().as_secs_f64() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = sink.stop();
    if json {
        println!("{}", serde_json::to_string(&c)?);
    } else {
        println!(
            "spans {}  requests {}  bytes wire {}  raw {}  bad requests {}  connections {}",
            c.spans, c.requests, c.bytes_wire, c.bytes_raw, c.errors, c.connections
        );
    }
    Ok(ExitCode::SUCCESS)
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}
