//! Adaptive request concurrency against fixed limits (`cargo bench --bench
//! concurrency`; not criterion: each cell is a timed load run, repeated and
//! reported as a median).
//!
//! Scenario 1: a receiver that adds 5 ms to every request and has no
//! capacity limit. Throughput grows with requests in flight until the
//! machine's CPUs run out; the adaptive limit should reach at least 90% of
//! the best fixed limit's throughput without being told where that is.
//!
//! Scenario 2: a 429 storm: the same receiver serves at most 4 requests at
//! once and throttles the rest (RESOURCE_EXHAUSTED + RetryInfo). A fixed
//! high limit keeps hammering it; the adaptive limit backs off.
//!
//! Producers offer spans as fast as the pipeline takes them (`Block`), for
//! a fixed time per run; the figure is spans acknowledged per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, Pipeline, Policy};

const RUN: Duration = Duration::from_secs(3);
const REPEATS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Limit {
    Fixed(usize),
    Adaptive,
}

struct Outcome {
    spans_per_sec: f64,
    throttled: u64,
    retries: u64,
    final_limit: u64,
}

fn run(limit: Limit, receiver_capacity: Option<usize>) -> Outcome {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 64 },
        latency: Duration::from_millis(5),
        max_concurrent: receiver_capacity,
        ..SinkOptions::default()
    })
    .expect("sink");
    let mut b = Pipeline::builder()
        .endpoint(sink.endpoint())
        .service_name("bench-concurrency")
        .policy(Policy::Block {
            max_wait: Duration::from_secs(30),
        });
    b = match limit {
        Limit::Fixed(n) => b.max_in_flight(n),
        Limit::Adaptive => b.adaptive_concurrency(1, 256),
    };
    let p = b.start().expect("pipeline");
    let scope = p.scope("bench", "1");
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2u64)
        .map(|t| {
            let p = p.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let now = workload::now_unix_nano();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let _ = workload::record_benchmark_span(&p, &scope, t + 1, i, now);
                    i += 1;
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(RUN);
    // Count what was acknowledged during the run, not the drain after it.
    let s = p.stats();
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in producers {
        h.join().expect("producer");
    }
    let end = p.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert_eq!(end.exported, end.accepted, "lost spans: {end:?}");
    let counts = sink.stop();
    assert_eq!(counts.spans, end.exported);
    Outcome {
        spans_per_sec: s.exported as f64 / elapsed,
        throttled: counts.throttled,
        retries: end.retries,
        final_limit: s.concurrency_limit,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn table(title: &str, capacity: Option<usize>, limits: &[Limit]) {
    println!("\n{title}");
    println!(
        "{:<12} {:>14} {:>12} {:>10} {:>14}",
        "limit", "spans/s (med)", "throttled", "retries", "final limit"
    );
    let mut best_fixed: f64 = 0.0;
    let mut adaptive = 0.0;
    for &limit in limits {
        let runs: Vec<Outcome> = (0..REPEATS).map(|_| run(limit, capacity)).collect();
        let rate = median(runs.iter().map(|o| o.spans_per_sec).collect());
        let mid = &runs[REPEATS / 2];
        let name = match limit {
            Limit::Fixed(n) => format!("fixed {n}"),
            Limit::Adaptive => "adaptive".to_owned(),
        };
        println!(
            "{name:<12} {rate:>14.0} {:>12} {:>10} {:>14}",
            mid.throttled, mid.retries, mid.final_limit
        );
        match limit {
            Limit::Fixed(_) => best_fixed = best_fixed.max(rate),
            Limit::Adaptive => adaptive = rate,
        }
    }
    println!(
        "adaptive / best fixed: {:.1}%",
        100.0 * adaptive / best_fixed.max(1.0)
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter argument picks one scenario.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let fixed: Vec<Limit> = [1, 2, 4, 8, 16, 32, 64]
        .into_iter()
        .map(Limit::Fixed)
        .chain([Limit::Adaptive])
        .collect();
    if want("latency") {
        table(
            "receiver +5 ms latency, no capacity limit (2 workers; limits are per worker)",
            None,
            &fixed,
        );
    }
    if want("storm") {
        table(
            "429 storm: receiver +5 ms, serves 4 at once, throttles the rest",
            Some(4),
            &[Limit::Fixed(4), Limit::Fixed(64), Limit::Adaptive],
        );
    }
}
