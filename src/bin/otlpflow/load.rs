//! Running a load: producer threads recording the benchmark workload
//! through a real pipeline, and the live progress line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otlpflow::sink::Sink;
use otlpflow::{workload, Compression, Pipeline, Policy};

use crate::args::*;
use crate::report::{make_report, print_report, Report};

pub(crate) fn run_load(
    endpoints: &[String],
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
        .endpoints(endpoints)
        .service_name("otlpflow-demo")
        .resource_attribute(
            "service.instance.id",
            format!("otlpflow-{}", std::process::id()),
        )
        .compression(compression)
        .policy(policy)
        .protocol(match load.protocol {
            ProtocolArg::Grpc => otlpflow::Protocol::Grpc,
            ProtocolArg::HttpProtobuf => otlpflow::Protocol::HttpProtobuf,
        })
        .http_version(if load.http2 {
            otlpflow::HttpVersion::Http2
        } else {
            otlpflow::HttpVersion::Http1
        });
    for (n, h) in load.headers.iter().enumerate() {
        let (k, v) =
            split_pair(h, "a header").map_err(|e| format!("--header number {}: {e}", n + 1))?;
        builder = builder.header(k, v);
    }
    if let Some(w) = load.workers {
        builder = builder.workers(w);
    }
    if let Some(b) = load.memory_budget {
        builder = builder.memory_budget(b);
    }
    if let Some(dir) = &load.spool_dir {
        builder = builder.spool(dir, load.spool_max_bytes);
    }
    if let Some(r) = load.rate_limit {
        builder = builder.rate_limit(r, r.ceil().max(1.0) as u64);
    }
    if let Some(n) = load.batch {
        builder = builder.max_batch_items(n);
    }
    builder = match load.concurrency {
        Some(Concurrency::Fixed(n)) => builder.max_in_flight(n),
        Some(Concurrency::Adaptive) => builder.adaptive_concurrency(1, 256),
        None => builder,
    };
    for (n, setting) in load.settings.iter().enumerate() {
        let (name, value) =
            split_pair(setting, "a setting").map_err(|e| format!("--set number {}: {e}", n + 1))?;
        builder = builder.set(name, value)?;
    }
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
    let shape = load.shape;
    let template = Arc::new(workload::benchmark_template(&pipeline, &scope));
    let producers: Vec<_> = (0..threads)
        .map(|t| {
            let p = pipeline.clone();
            let template = template.clone();
            let n = per_thread + u64::from((t as u64) < extra);
            std::thread::spawn(move || {
                let seed = workload::splitmix(t as u64 + 1);
                let pace = Pace {
                    n,
                    deadline,
                    interval,
                };
                // One loop per kind of record, each with its record call
                // inlined (a `match` inside one loop changed what the
                // compiler inlined, and so the instructions counted).
                // Refusals are counted by the pipeline and reported below.
                match (signal, shape) {
                    (SignalArg::Traces, ShapeArg::Bench) => pace.run(|i, now| {
                        let _ = workload::record_benchmark_span(&p, &scope, seed, i, now);
                    }),
                    (SignalArg::Traces, ShapeArg::Template) => pace.run(|i, now| {
                        let _ =
                            workload::record_templated_benchmark_span(&p, &template, seed, i, now);
                    }),
                    (SignalArg::Traces, ShapeArg::Varied) => pace.run(|i, now| {
                        let _ =
                            workload::with_mixed_span(seed, i, now, |s| p.record_span(&scope, s));
                    }),
                    (SignalArg::Logs, _) => pace.run(|i, now| {
                        let _ = workload::record_benchmark_log(&p, &scope, seed, i, now);
                    }),
                    (SignalArg::Metrics, _) => pace.run(|i, now| {
                        let _ = workload::record_benchmark_point(&p, &scope, i, now);
                    }),
                }
            })
        })
        .collect();
    for p in producers {
        p.join().map_err(|_| "a producer thread panicked")?;
    }
    if load.spool_dir.is_some() {
        // What went to the spool (now or in an earlier run) is replayed
        // before the run ends, for up to a minute.
        pipeline.flush(Duration::from_secs(60))?;
        let until = Instant::now() + Duration::from_secs(60);
        while pipeline.stats().spool.bytes > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
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

pub(crate) fn spawn_progress(
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
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let s = p.stats();
            // The pipeline's own last-interval rates (1-2 s window).
            let r = &s.rates_last;
            bar.set_position(s.exported);
            bar.set_message(format!(
                "{}/s  {:.1} MB/s  {} req/s  lost {}/s  dropped {}  in flight {}  concurrency {}  ring {}%  export p99 {:.2} ms (min {:.2} mean {:.2} max {:.2}), end-to-end p99 {:.2} ms",
                r.exported,
                r.bytes_wire as f64 / 1e6,
                r.requests,
                r.dropped.total() + r.failed.total(),
                s.dropped.total(),
                s.in_flight,
                s.concurrency_limit,
                s.ring_fill_max_pct,
                s.export_latency.p99_ns as f64 / 1e6,
                s.export_latency.min_ns as f64 / 1e6,
                s.export_latency.mean_ns as f64 / 1e6,
                s.export_latency.max_ns as f64 / 1e6,
                s.e2e_latency.p99_ns as f64 / 1e6
            ));
        }
        bar.finish_and_clear();
    })
}

/// How one producer thread offers its records: how many, until when, and
/// at what interval.
struct Pace {
    n: u64,
    deadline: Option<Instant>,
    interval: Option<Duration>,
}

impl Pace {
    /// Calls `record(i, now_ns)` for each record due.
    #[inline(always)]
    fn run(&self, mut record: impl FnMut(u64, u64)) {
        let mut now = workload::now_unix_nano();
        let t0 = Instant::now();
        for i in 0..self.n {
            if i % 64 == 0 {
                if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                now = workload::now_unix_nano();
            }
            if let Some(iv) = self.interval {
                // Pace: record i is due at t0 + i * interval.
                let due = t0 + iv.mul_f64(i as f64);
                let now_i = Instant::now();
                if due > now_i {
                    std::thread::sleep(due - now_i);
                }
            }
            record(i, now);
        }
    }
}
