//! The `otlpflow` command: `demo` (the embedded receiver plus producers
//! through the real pipeline), `gen` (producers against any OTLP/gRPC
//! endpoint) and `sink` (the embedded receiver, standalone).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use otlpflow::sink::{Sink, SinkOptions, Verify};

mod args;
mod load;
mod report;

use args::*;
use load::run_load;
use report::received_of;

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
        /// The receiver, e.g. http://127.0.0.1:4317. Repeat it for a fleet:
        /// spans are routed by trace id across them (the Collector
        /// loadbalancing exporter's ring).
        #[arg(long, required = true)]
        endpoint: Vec<String>,
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
    let report = run_load(&[endpoint], &load, Some(&sink))?;
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
