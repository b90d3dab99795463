//! Flow control end to end, against the embedded receiver with injected
//! faults over real loopback sockets: a slow receiver, a receiver down and
//! then back, 429 storms with Retry-After, RESOURCE_EXHAUSTED with
//! RetryInfo, a receiver with a capacity. Under `Block` every offered span
//! arrives exactly once; under `DropNewest` the accounting identity holds
//! exactly and the receiver's count equals `exported`; the memory budget
//! holds. Every load is bounded in count and time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use otlpflow::sink::{Fault, Sink, SinkOptions, Verify};
use otlpflow::{
    workload, BreakerConfig, Health, Pipeline, Policy, Protocol, RetryConfig, RetryQueue, Stats,
};

fn sink_with(opts: SinkOptions) -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        ..opts
    })
    .expect("sink starts")
}

fn builder(endpoint: &str) -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .endpoint(endpoint)
        .service_name("flowtest")
        .shards(2)
        .workers(2)
        .ring_bytes(1 << 16)
        .max_batch_items(100)
        .linger(Duration::from_millis(5))
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
            max_elapsed: Duration::from_secs(30),
            multiplier: 2.0,
        })
}

fn block() -> Policy {
    Policy::Block {
        max_wait: Duration::from_secs(30),
    }
}

fn record(p: &Pipeline, threads: u64, per_thread: u64) {
    let scope = p.scope("flowtest", "1");
    std::thread::scope(|s| {
        for t in 0..threads {
            let p = p.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    let _ = workload::record_benchmark_span(&p, &scope, t + 1, i, 1_700_000_000);
                }
            });
        }
    });
}

/// The receiver's spans, checked for duplicates.
fn unique_spans(sink: &Sink) -> u64 {
    let mut ids = HashSet::new();
    for req in sink.take_requests() {
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                for span in ss.spans {
                    assert!(
                        ids.insert((span.trace_id, span.span_id)),
                        "a span arrived twice"
                    );
                }
            }
        }
    }
    ids.len() as u64
}

fn assert_identity(s: &Stats) {
    if let Err(e) = s.check_identity() {
        panic!("accounting identity: {e}: {s:?}");
    }
    assert_eq!(s.in_flight, 0, "after shutdown: {s:?}");
}

/// Under Block, everything offered arrived once; returns the stats.
fn assert_all_delivered(p: &Pipeline, sink: &Sink, offered: u64) -> Stats {
    let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_identity(&s);
    assert_eq!(s.offered, offered, "{s:?}");
    assert_eq!(s.exported, offered, "{s:?}");
    assert_eq!(unique_spans(sink), offered);
    s
}

/// Largest request the pipeline can hold beyond the budget: one compressed
/// copy in flight while its batch is released (see `flow::budget`).
const ONE_BATCH: u64 = 100 * 400;

#[test]
fn slow_receiver_under_block_delivers_everything_within_the_memory_budget() {
    let sink = sink_with(SinkOptions {
        latency: Duration::from_millis(40),
        ..SinkOptions::default()
    });
    let budget = 128 << 10;
    let p = builder(&sink.endpoint())
        .policy(block())
        .memory_budget(budget)
        .start()
        .expect("start");
    record(&p, 2, 5_000);
    let s = assert_all_delivered(&p, &sink, 10_000);
    assert!(s.memory_peak > 0, "the budget was used: {s:?}");
    assert!(s.memory_peak <= budget + ONE_BATCH, "{s:?}");
    assert_eq!(s.memory_used, 0, "all memory returned: {s:?}");
}

#[test]
fn slow_receiver_under_drop_newest_keeps_the_identity_exactly() {
    let sink = sink_with(SinkOptions {
        latency: Duration::from_millis(40),
        ..SinkOptions::default()
    });
    let budget = 96 << 10;
    let p = builder(&sink.endpoint())
        .policy(Policy::DropNewest)
        .memory_budget(budget)
        .max_in_flight(1)
        .start()
        .expect("start");
    record(&p, 2, 10_000);
    let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_identity(&s);
    assert_eq!(s.offered, 20_000);
    assert!(
        s.dropped[otlpflow::DropReason::Memory] + s.dropped[otlpflow::DropReason::Full] > 0,
        "{s:?}"
    );
    assert_eq!(s.failed.total(), 0, "{s:?}");
    assert_eq!(sink.counts().spans, s.exported);
    assert_eq!(unique_spans(&sink), s.exported);
    assert!(s.memory_peak <= budget + ONE_BATCH, "{s:?}");
}

#[test]
fn receiver_down_then_back_delivers_everything_through_the_breaker() {
    // A port with nobody listening (yet).
    let endpoint = dead_endpoint();
    let addr: std::net::SocketAddr = endpoint["http://".len()..].parse().expect("addr");
    let p = builder(&endpoint)
        .policy(block())
        .circuit_breaker(BreakerConfig {
            threshold: 3,
            min_open: Duration::from_millis(50),
            max_open: Duration::from_millis(400),
        })
        .start()
        .expect("start");
    let producer = {
        let p = p.clone();
        std::thread::spawn(move || record(&p, 2, 3_000))
    };
    // The endpoint is seen down and the breaker opens.
    let t0 = Instant::now();
    while p.health() != Health::Down && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(p.health(), Health::Down, "{:?}", p.stats());
    std::thread::sleep(Duration::from_millis(500));
    let sink = sink_with(SinkOptions {
        grpc_addr: addr,
        ..SinkOptions::default()
    });
    producer.join().expect("producer");
    let s = assert_all_delivered(&p, &sink, 6_000);
    assert!(s.breaker_opened >= 1, "{s:?}");
    assert!(s.request_errors > 0, "{s:?}");
}

#[test]
fn http_429_storm_with_retry_after_is_waited_out() {
    let sink = sink_with(SinkOptions {
        http_addr: Some("127.0.0.1:0".parse().expect("addr")),
        ..SinkOptions::default()
    });
    sink.inject(
        Fault::HttpStatus {
            status: 429,
            retry_after: Some("1".into()),
        },
        8,
    );
    let p = builder(&sink.http_endpoint().expect("http"))
        .protocol(Protocol::HttpProtobuf)
        .policy(block())
        .adaptive_concurrency(1, 16)
        .start()
        .expect("start");
    let t0 = Instant::now();
    record(&p, 2, 2_000);
    let s = assert_all_delivered(&p, &sink, 4_000);
    assert!(s.retries >= 8, "{s:?}");
    assert_eq!(sink.counts().injected, 8);
    // Retry-After: 1 s was honoured (a lower bound, not a speed claim).
    assert!(t0.elapsed() >= Duration::from_secs(1));
}

#[test]
fn resource_exhausted_with_retry_info_is_retried_after_the_delay() {
    let sink = sink_with(SinkOptions::default());
    sink.inject(
        Fault::GrpcStatus {
            code: 8,
            retry_info: Some(Duration::from_millis(200)),
        },
        10,
    );
    let p = builder(&sink.endpoint())
        .policy(block())
        .start()
        .expect("start");
    record(&p, 2, 2_000);
    let s = assert_all_delivered(&p, &sink, 4_000);
    assert!(s.retries >= 10, "{s:?}");
}

#[test]
fn adaptive_concurrency_backs_off_from_a_receiver_at_capacity() {
    let sink = sink_with(SinkOptions {
        latency: Duration::from_millis(5),
        max_concurrent: Some(2),
        ..SinkOptions::default()
    });
    let p = builder(&sink.endpoint())
        .policy(block())
        .adaptive_concurrency(1, 64)
        .start()
        .expect("start");
    record(&p, 2, 20_000);
    let s = assert_all_delivered(&p, &sink, 40_000);
    let throttled = sink.counts().throttled;
    assert!(throttled > 0, "the receiver pushed back: {s:?}");
    // Two workers, a receiver serving 2 at once: the limits stay near it,
    // far below the 2 x 64 allowed.
    assert!(s.concurrency_limit <= 16, "{s:?}");
}

#[test]
fn drop_oldest_evicts_requests_waiting_for_retry_and_counts_them() {
    // Every request is throttled with a long RetryInfo, so requests pile up
    // waiting for their retry; fresh batches evict the oldest.
    let sink = sink_with(SinkOptions::default());
    sink.inject(
        Fault::GrpcStatus {
            code: 8,
            retry_info: Some(Duration::from_secs(1)),
        },
        10,
    );
    let p = builder(&sink.endpoint())
        .workers(1)
        .max_in_flight(2)
        .policy(Policy::DropNewest)
        .retry_queue(RetryQueue::DropOldest)
        .start()
        .expect("start");
    record(&p, 1, 3_000);
    let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_identity(&s);
    assert!(s.failed[otlpflow::FailReason::Evicted] > 0, "{s:?}");
    assert_eq!(
        s.failed.total(),
        s.failed[otlpflow::FailReason::Evicted],
        "{s:?}"
    );
    assert_eq!(sink.counts().spans, s.exported);
    assert_eq!(unique_spans(&sink), s.exported);
}

#[test]
fn egress_pacing_delays_requests_and_drops_none() {
    let sink = sink_with(SinkOptions::default());
    let rate = 2_000_000.0; // bytes per second on the wire
    let burst = 64 << 10;
    let p = builder(&sink.endpoint())
        .policy(block())
        .egress_byte_rate(rate, burst)
        .start()
        .expect("start");
    let t0 = Instant::now();
    record(&p, 2, 6_000);
    let s = assert_all_delivered(&p, &sink, 12_000);
    // Pacing is a lower bound on time: at most rate x t + burst bytes.
    let floor = (s.bytes_wire.saturating_sub(burst)) as f64 / rate;
    assert!(s.bytes_wire > 2 * burst, "{s:?}");
    assert!(
        t0.elapsed().as_secs_f64() >= floor * 0.95,
        "{} bytes in {:?}",
        s.bytes_wire,
        t0.elapsed()
    );
}

#[test]
fn flow_settings_are_validated() {
    let bad = [
        Pipeline::builder().memory_budget(10).build().err(),
        Pipeline::builder().adaptive_concurrency(0, 4).build().err(),
        Pipeline::builder().adaptive_concurrency(8, 4).build().err(),
        Pipeline::builder().egress_byte_rate(0.0, 1).build().err(),
        Pipeline::builder()
            .circuit_breaker(BreakerConfig {
                threshold: 0,
                ..BreakerConfig::default()
            })
            .build()
            .err(),
    ];
    for e in bad {
        let e = e.expect("refused");
        assert!(e.is_config(), "{e}");
    }
    let env = |k: &str| match k {
        "OTLPFLOW_POLICY" => Some("block:250".to_owned()),
        "OTLPFLOW_MEMORY_BUDGET" => Some("16M".to_owned()),
        "OTLPFLOW_CONCURRENCY" => Some("adaptive:2:32".to_owned()),
        _ => None,
    };
    let c = Pipeline::builder()
        .apply_env_from(env)
        .expect("env")
        .build()
        .expect("valid");
    let dbg = format!("{c:?}");
    assert!(dbg.contains("memory_budget: Some(16777216)"), "{dbg}");
    assert!(dbg.contains("adaptive_concurrency: Some((2, 32))"), "{dbg}");
    assert!(dbg.contains("max_wait: 250ms"), "{dbg}");
    let e = Pipeline::builder()
        .apply_env_from(|k| (k == "OTLPFLOW_MEMORY_BUDGET").then(|| "lots".to_owned()))
        .expect_err("refused");
    assert!(e.to_string().contains("OTLPFLOW_MEMORY_BUDGET"), "{e}");
}

#[test]
fn window_and_per_scope_limits_refuse_over_their_limits() {
    let sink = sink_with(SinkOptions::default());
    let p = builder(&sink.endpoint())
        .policy(block())
        .window_limit(1_000, Duration::from_secs(1))
        .start()
        .expect("start");
    let t0 = Instant::now();
    record(&p, 1, 5_000);
    let elapsed = t0.elapsed().as_secs_f64();
    let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    assert_identity(&s);
    assert_eq!(
        s.accepted + s.dropped[otlpflow::DropReason::RateLimited],
        5_000,
        "{s:?}"
    );
    assert!(
        s.accepted as f64 <= 1_000.0 * (1.0 + elapsed.ceil()),
        "{s:?} in {elapsed}s"
    );
    assert!(s.dropped[otlpflow::DropReason::RateLimited] > 0, "{s:?}");
    assert_eq!(sink.counts().spans, s.exported);

    // Per scope: a noisy scope is held to its bucket; a quiet one is not.
    let sink = sink_with(SinkOptions::default());
    let p = builder(&sink.endpoint())
        .policy(block())
        .scope_rate_limit(100.0, 200)
        .start()
        .expect("start");
    let noisy = p.scope("noisy", "1");
    let quiet = p.scope("quiet", "1");
    let t0 = Instant::now();
    let mut noisy_ok = 0u64;
    for i in 0..5_000 {
        noisy_ok += workload::record_benchmark_span(&p, &noisy, 1, i, 1_700_000_000).is_ok() as u64;
    }
    let mut quiet_ok = 0u64;
    for i in 0..150 {
        quiet_ok += workload::record_benchmark_span(&p, &quiet, 2, i, 1_700_000_000).is_ok() as u64;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(quiet_ok, 150);
    assert!(
        noisy_ok as f64 <= 200.0 + 100.0 * elapsed + 1.0,
        "{noisy_ok}"
    );
    assert!(noisy_ok >= 200, "{noisy_ok}");
    let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    assert_identity(&s);
    assert_eq!(
        s.dropped[otlpflow::DropReason::RateLimited],
        5_000 - noisy_ok
    );
    assert_eq!(sink.counts().spans, noisy_ok + quiet_ok);
}

#[test]
fn a_receiver_slower_than_half_the_timeout_is_degraded() {
    let sink = sink_with(SinkOptions {
        latency: Duration::from_millis(150),
        ..SinkOptions::default()
    });
    let p = builder(&sink.endpoint())
        .policy(block())
        .request_timeout(Duration::from_millis(250))
        .start()
        .expect("start");
    assert_eq!(p.health(), Health::Healthy);
    record(&p, 1, 200);
    p.flush(Duration::from_secs(10)).expect("flush");
    assert_eq!(p.health(), Health::Degraded, "{:?}", p.stats());
    let s = assert_all_delivered(&p, &sink, 200);
    assert_eq!(s.failed.total(), 0);
}

#[test]
fn a_worker_over_its_cpu_budget_holds_its_concurrency_down() {
    let sink = sink_with(SinkOptions {
        verify: Verify::Walk { sample_every: 64 },
        keep_requests: false,
        ..SinkOptions::default()
    });
    // 1% of a core: any worker moving spans is over it.
    let p = builder(&sink.endpoint())
        .policy(block())
        .adaptive_concurrency(1, 64)
        .worker_cpu_budget(0.01)
        .start()
        .expect("start");
    record(&p, 2, 30_000);
    let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_identity(&s);
    assert_eq!(s.exported, 60_000, "{s:?}");
    assert_eq!(sink.counts().spans, 60_000);
    // Two workers, each held at its minimum of 1.
    assert!(s.concurrency_limit <= 3, "{s:?}");
    assert!(Pipeline::builder()
        .worker_cpu_budget(0.5)
        .build()
        .expect_err("needs adaptive concurrency")
        .is_config());
}

/// An endpoint nobody listens on (a port bound, read, and let go).
fn dead_endpoint() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    format!("http://{addr}")
}

/// Records `n` log records, then waits (bounded) for a breaker to open.
fn logs_until_a_breaker_opens(p: &Pipeline, n: i64) {
    let scope = p.scope("flowtest", "1");
    for i in 0..n {
        let log = otlpflow::LogRecord {
            severity_number: otlpflow::Severity::INFO,
            body: Some(otlpflow::Value::I64(i)),
            ..Default::default()
        };
        let _ = p.record_log(&scope, &log);
    }
    let t0 = Instant::now();
    while p.stats().breaker_opened == 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Records `n` spans and returns how long the receiver took to count them
/// all (waiting at most 10 s).
fn spans_delivered_in(p: &Pipeline, sink: &Sink, n: u64) -> Duration {
    record(p, 1, n);
    let t1 = Instant::now();
    while sink.counts().spans < n && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    t1.elapsed()
}

#[test]
fn a_dead_logs_endpoint_does_not_hold_spans_back() {
    // Spans go to a live receiver, logs to a port nobody listens on: the
    // logs' breaker opens, the spans' does not, and health says Degraded.
    let sink = sink_with(SinkOptions::default());
    let p = builder(&sink.endpoint())
        .workers(1)
        .ring_bytes(1 << 20)
        .logs_endpoint(dead_endpoint())
        .policy(Policy::DropNewest)
        .circuit_breaker(BreakerConfig {
            threshold: 2,
            min_open: Duration::from_secs(2),
            max_open: Duration::from_secs(5),
        })
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(1),
            multiplier: 2.0,
        })
        .start()
        .expect("start");
    logs_until_a_breaker_opens(&p, 50);
    assert!(p.stats().breaker_opened >= 1, "{:?}", p.stats());
    // Spans recorded now go out while the logs' breaker is open.
    let took = spans_delivered_in(&p, &sink, 500);
    assert_eq!(sink.counts().spans, 500, "{:?}", p.stats());
    // Not held for the logs' breaker's 2 s open period (a shared breaker
    // would have kept the spans waiting for it).
    assert!(took < Duration::from_secs(2), "spans waited {took:?}");
    assert_eq!(p.health(), Health::Degraded, "{:?}", p.stats());
    let s = p.shutdown(Duration::from_secs(5)).expect("shutdown");
    assert_identity(&s);
    assert_eq!(s.exported_by_signal.traces, 500);
    assert_eq!(s.exported_by_signal.logs, 0);
    assert_eq!(
        s.failed.total(),
        50,
        "every log record failed, counted: {s:?}"
    );
}

#[test]
fn requests_waiting_on_an_open_breaker_give_way_under_drop_oldest() {
    // Logs to a dead endpoint fill the worker's two request slots and wait
    // on their open breaker; with DropOldest, fresh span batches evict them
    // (counted) instead of waiting behind them.
    let sink = sink_with(SinkOptions::default());
    let p = builder(&sink.endpoint())
        .workers(1)
        .max_in_flight(2)
        .ring_bytes(1 << 20)
        .logs_endpoint(dead_endpoint())
        .policy(Policy::DropNewest)
        .retry_queue(RetryQueue::DropOldest)
        .circuit_breaker(BreakerConfig {
            threshold: 1,
            min_open: Duration::from_secs(5),
            max_open: Duration::from_secs(5),
        })
        .start()
        .expect("start");
    logs_until_a_breaker_opens(&p, 500);
    let took = spans_delivered_in(&p, &sink, 1_000);
    assert_eq!(sink.counts().spans, 1_000, "{:?}", p.stats());
    assert!(
        took < Duration::from_secs(4),
        "spans waited for the breaker: {took:?}"
    );
    let s = p.shutdown(Duration::from_secs(2)).expect("shutdown");
    assert_identity(&s);
    assert!(s.failed[otlpflow::FailReason::Evicted] > 0, "{s:?}");
    assert_eq!(s.exported_by_signal.to_array(), [1_000, 0, 0], "{s:?}");
}
