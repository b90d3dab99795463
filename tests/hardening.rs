//! Hostile and careless input, each a test that failed on the code before
//! its fix: deadlines that would wrap, shutdown's own deadline, losses at
//! shutdown counted under the reason the docs give, secrets kept out of
//! every error and `Debug`, and a receiver that refuses bad requests with a
//! status and counts them. Real sockets on loopback; every load bounded.

use std::time::{Duration, Instant};

use otlpflow::sink::{Fault, Sink, SinkOptions, Verify};
use otlpflow::{workload, FailReason, Pipeline, Policy, RetryConfig};

fn builder(endpoint: &str) -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .endpoint(endpoint)
        .service_name("hardening")
        .shards(1)
        .workers(1)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::MAX,
        })
}

fn record(p: &Pipeline, n: u64) {
    let scope = p.scope("hardening", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, 3, i, 1_700_000_000_000_000_000).unwrap();
    }
}

/// `shutdown(Duration::MAX)`, the usual "wait as long as it takes", used to
/// panic after the pipeline was closed (so it could never be shut down);
/// `flush(Duration::MAX)` likewise. Now both wait, and everything arrives.
/// A `Block` policy with `Duration::MAX` of patience records too.
#[test]
fn the_longest_timeouts_wait_instead_of_wrapping() {
    let sink = Sink::start(SinkOptions::default()).unwrap();
    let p = builder(&sink.endpoint()).start().unwrap();
    record(&p, 300);
    let s = p.flush(Duration::MAX).unwrap();
    assert_eq!(s.exported, 300);
    record(&p, 200);
    let s = p.shutdown(Duration::MAX).unwrap();
    assert_eq!((s.exported, s.in_flight), (500, 0), "{s:?}");
    assert_eq!(sink.counts().spans, 500);
    assert!(p.shutdown(Duration::MAX).unwrap_err().is_shutdown());
}

/// A receiver that answers every request with UNAVAILABLE, a retry budget
/// of a minute and a shutdown deadline of 300 ms: shutdown returns by its
/// deadline plus a small constant, and the records still retrying are
/// counted as shutdown losses (not as retries exhausted), with the identity
/// exact.
#[test]
fn shutdown_keeps_its_deadline_and_counts_its_losses_as_shutdown() {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap();
    sink.inject(
        Fault::GrpcStatus {
            code: 14,
            retry_info: None,
        },
        100_000,
    );
    let p = builder(&sink.endpoint())
        .max_in_flight(1)
        .max_batch_items(50)
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_elapsed: Duration::from_secs(60),
            multiplier: 2.0,
        })
        .start()
        .unwrap();
    record(&p, 400);
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let s = p.shutdown(Duration::from_millis(300)).unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1800), "shutdown took {took:?}");
    s.check_identity().unwrap();
    assert_eq!(s.in_flight, 0, "{s:?}");
    assert_eq!(s.exported, 0, "{s:?}");
    assert_eq!(s.failed[FailReason::Shutdown], 400, "{s:?}");
    assert_eq!(s.failed[FailReason::Exhausted], 0, "{s:?}");
}

/// Header values (credentials, usually) never appear in `Debug` output or
/// in an error: not from the builder, not from a per-signal header, not
/// from a malformed `OTEL_EXPORTER_OTLP_HEADERS` entry.
#[test]
fn secrets_stay_out_of_debug_output_and_errors() {
    let b = Pipeline::builder()
        .header("authorization", "Bearer top-s3cret")
        .signal_header(otlpflow::Signal::Logs, "x-api-key", "also-s3cret");
    let shown = format!("{b:?}");
    assert!(
        shown.contains("authorization") && shown.contains("x-api-key"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    let shown = format!("{:?}", b.clone().build().unwrap());
    assert!(!shown.contains("s3cret"), "{shown}");
    for bad in [
        "Authorization: Bearer top-s3cret",
        "ok=1,Authorization Bearer top-s3cret",
        "key=%zzs3cret",
    ] {
        let e = Pipeline::builder()
            .apply_env_from(|k| (k == "OTEL_EXPORTER_OTLP_HEADERS").then(|| bad.to_owned()))
            .unwrap_err();
        let text = e.to_string();
        assert!(
            e.is_config() && text.contains("OTEL_EXPORTER_OTLP_HEADERS"),
            "{text}"
        );
        assert!(text.contains("entry"), "names the position: {text}");
        assert!(
            !text.contains("s3cret") && !text.contains("Bearer"),
            "{text}"
        );
    }
}
