//! End-to-end tests of the engine over real loopback sockets: the pipeline
//! exports to the embedded receiver, which decodes every request with the
//! opentelemetry-proto types. Every load is bounded in count and time.

use std::collections::HashSet;

mod support;
use std::time::{Duration, Instant};
use support::keeping_sink;

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{
    workload, Compression, KeyValue, Pipeline, Policy, RecordError, RetryConfig, Span, Stats, Value,
};

fn builder(endpoint: &str) -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .endpoint(endpoint)
        .service_name("itest")
        .shards(2)
        .workers(2)
        .ring_bytes(1 << 16)
        .max_batch_items(100)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(10),
            multiplier: 2.0,
        })
}

fn assert_identity(s: &Stats) {
    if let Err(e) = s.check_identity() {
        panic!("accounting identity: {e}: {s:?}");
    }
}

fn record_n(p: &Pipeline, threads: u64, per_thread: u64) {
    let scope = p.scope("itest", "1");
    std::thread::scope(|s| {
        for t in 0..threads {
            let p = p.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    let _ = workload::record_benchmark_span(
                        &p,
                        &scope,
                        t + 1,
                        i,
                        1_700_000_000_000_000_000,
                    );
                }
            });
        }
    });
}

#[test]
fn every_span_is_delivered_exactly_once_with_each_compression() {
    // zstd at its default level 1, and at -3, one of its fast levels; the
    // workers keeping the ring lines they read cached (the default), and
    // evicting them.
    for (compression, level, eviction) in [
        (Compression::None, 1, false),
        (Compression::Gzip, 1, false),
        (Compression::Zstd, 1, false),
        (Compression::Zstd, -3, false),
        (Compression::None, 1, true),
    ] {
        let sink = keeping_sink();
        let p = builder(&sink.endpoint())
            .compression(compression)
            .compression_level(level)
            .ring_eviction(eviction)
            .policy(Policy::Block {
                max_wait: Duration::from_secs(10),
            })
            .start()
            .unwrap();
        record_n(&p, 4, 2_500);
        let s = p.shutdown(Duration::from_secs(20)).unwrap();
        assert_identity(&s);
        assert_eq!(
            (s.accepted, s.exported, s.failed.total()),
            (10_000, 10_000, 0),
            "{compression:?}"
        );
        assert_eq!(s.in_flight, 0);
        let counts = sink.counts();
        assert_eq!(counts.spans, 10_000);
        assert_eq!(counts.errors, 0);
        // Each (trace, span) pair arrives once, with the resource and scope.
        let mut ids = HashSet::new();
        for req in sink.take_requests() {
            for rs in req.resource_spans {
                let res = rs.resource.expect("resource");
                assert!(res.attributes.iter().any(|kv| kv.key == "service.name"));
                for ss in rs.scope_spans {
                    assert_eq!(ss.scope.expect("scope").name, "itest");
                    for span in ss.spans {
                        assert_eq!(span.name, "GET /api/v1/items/{id}");
                        assert_eq!(span.attributes.len(), 5);
                        assert_eq!(span.events.len(), 1);
                        assert!(ids.insert((span.trace_id, span.span_id)), "duplicate span");
                    }
                }
            }
        }
        assert_eq!(ids.len(), 10_000, "{compression:?}");
        if compression != Compression::None {
            assert!(s.bytes_wire < s.bytes_raw, "compression shrinks: {s:?}");
        }
    }
}

#[test]
fn flush_returns_after_everything_accepted_before_it_is_acknowledged() {
    let sink = keeping_sink();
    let p = builder(&sink.endpoint())
        .linger(Duration::from_secs(30))
        .max_batch_items(10_000)
        .start()
        .unwrap();
    record_n(&p, 1, 1_234);
    // The linger is 30 s and the batch is not full: only flush sends it.
    let s = p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(s.exported, 1_234);
    assert_eq!(sink.counts().spans, 1_234);
    record_n(&p, 2, 100);
    let s = p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(s.exported, 1_434);
    assert_eq!(sink.counts().spans, 1_434);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn shutdown_refuses_later_records_with_a_clear_error() {
    let sink = keeping_sink();
    let p = builder(&sink.endpoint()).start().unwrap();
    let scope = p.scope("itest", "1");
    record_n(&p, 1, 10);
    let s = p.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(s.exported, 10);
    let r = workload::record_benchmark_span(&p, &scope, 1, 1, 1);
    assert_eq!(r, Err(RecordError::Shutdown));
    assert_eq!(p.stats().dropped[otlpflow::DropReason::Shutdown], 1);
    assert!(p
        .shutdown(Duration::from_secs(1))
        .unwrap_err()
        .is_shutdown());
    assert!(p.flush(Duration::from_secs(1)).unwrap_err().is_shutdown());
    assert_identity(&p.stats());
}

#[test]
fn unavailable_is_retried_and_then_delivered() {
    let sink = keeping_sink();
    sink.fail_next(3, 14);
    let p = builder(&sink.endpoint()).workers(1).start().unwrap();
    record_n(&p, 1, 50);
    let s = p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(s.exported, 50);
    assert_eq!(s.failed.total(), 0);
    // The success after the failures makes the endpoint healthy again.
    assert_eq!(p.health(), otlpflow::Health::Healthy);
    assert!(s.retries >= 3, "{s:?}");
    assert_eq!(sink.counts().injected, 3);
    assert_eq!(sink.counts().spans, 50);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_permanent_error_is_counted_as_failed_and_not_retried() {
    let sink = keeping_sink();
    sink.fail_next(1, 3); // INVALID_ARGUMENT
    let p = builder(&sink.endpoint())
        .workers(1)
        .shards(1)
        .start()
        .unwrap();
    record_n(&p, 1, 40);
    let s = p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(s.failed.total(), 40, "{s:?}");
    assert_eq!(s.retries, 0);
    assert_eq!(s.exported, 0);
    assert!(p.last_error().unwrap().contains("grpc-status 3"));
    // The next batch goes through.
    record_n(&p, 1, 5);
    let s = p.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(s.exported, 5);
    assert_identity(&s);
}

#[test]
fn a_dead_endpoint_makes_flush_and_shutdown_return_on_time_with_counts() {
    // A port with nothing listening: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = builder(&format!("http://127.0.0.1:{port}"))
        .start()
        .unwrap();
    record_n(&p, 1, 30);
    let t = Instant::now();
    let e = p.flush(Duration::from_millis(300)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "flush overran: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let s = p.shutdown(Duration::from_millis(300)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown overran: {:?}",
        t.elapsed()
    );
    assert_eq!(s.exported, 0);
    assert_eq!(s.failed.total(), 30, "{s:?}");
    // Still retrying when shutdown's deadline came: counted as shutdown
    // losses or exhausted retries, not as permanent refusals.
    assert_eq!(s.failed[otlpflow::FailReason::Permanent], 0, "{s:?}");
    assert_eq!(s.in_flight, 0);
    assert!(s.request_errors > 0);
    assert_eq!(p.health(), otlpflow::Health::Down);
    assert_identity(&s);
}

#[test]
fn drop_newest_accounts_for_every_record() {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 1 },
        ..SinkOptions::default()
    })
    .unwrap();
    let p = builder(&sink.endpoint())
        .workers(1)
        .ring_bytes(4096)
        .policy(Policy::DropNewest)
        .start()
        .unwrap();
    record_n(&p, 2, 20_000);
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(s.offered, 40_000);
    assert_identity(&s);
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.accepted, s.exported);
    assert_eq!(sink.counts().spans, s.exported);
    assert_eq!(s.dropped.total(), s.dropped[otlpflow::DropReason::Full]);
}

#[test]
fn block_policy_delivers_everything_through_a_tiny_ring() {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 1 },
        ..SinkOptions::default()
    })
    .unwrap();
    let p = builder(&sink.endpoint())
        .ring_bytes(4096)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .unwrap();
    record_n(&p, 3, 5_000);
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(
        (s.offered, s.exported, s.dropped.total()),
        (15_000, 15_000, 0),
        "{s:?}"
    );
    assert_eq!(sink.counts().spans, 15_000);
}

#[test]
fn record_batch_reports_accepted_and_dropped() {
    let sink = keeping_sink();
    let p = builder(&sink.endpoint()).ring_bytes(4096).start().unwrap();
    let scope = p.scope("itest", "1");
    let big = "x".repeat(3000);
    let small_attrs = [KeyValue::new("k", Value::I64(1))];
    let big_attrs = [KeyValue::new("k", Value::Str(&big))];
    let mk = |attrs| Span {
        trace_id: [7; 16],
        span_id: [8; 8],
        name: "batch",
        attributes: attrs,
        ..Default::default()
    };
    let spans = [mk(&small_attrs), mk(&big_attrs), mk(&small_attrs)];
    let r = p.record_batch(&scope, &spans);
    assert_eq!((r.accepted, r.dropped), (2, 1));
    assert_eq!(p.record_span(&scope, &spans[1]), Err(RecordError::TooLarge));
    let s = p.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(s.dropped[otlpflow::DropReason::TooLarge], 2);
    assert_eq!(s.exported, 2);
    assert_identity(&s);
}

#[test]
fn a_scope_of_another_pipeline_is_refused() {
    let sink = keeping_sink();
    let a = builder(&sink.endpoint()).start().unwrap();
    let b = builder(&sink.endpoint()).start().unwrap();
    let foreign = b.scope("b", "1");
    let span = Span {
        trace_id: [1; 16],
        span_id: [1; 8],
        ..Default::default()
    };
    assert_eq!(
        a.record_span(&foreign, &span),
        Err(RecordError::InvalidScope)
    );
    assert_eq!(a.stats().dropped[otlpflow::DropReason::Invalid], 1);
    a.shutdown(Duration::from_secs(5)).unwrap();
    b.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_malformed_request_is_an_error_at_the_sink_not_a_crash() {
    // Speak HTTP/2 to the sink by hand with a body that is not protobuf.
    let sink = keeping_sink();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = sink.addr();
    let status = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!("http://{addr}{}", otlpflow::sink::TRACE_PATH))
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let (resp, mut stream) = client.send_request(req, false).unwrap();
        let garbage = bytes::Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
        stream.send_data(garbage, true).unwrap();
        let resp = resp.await.unwrap();
        resp.headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    });
    assert_eq!(status.as_deref(), Some("3"));
    assert_eq!(sink.counts().errors, 1);
    assert_eq!(sink.counts().spans, 0);
}

#[test]
fn user_headers_user_agent_and_timeout_reach_the_receiver() {
    let sink = keeping_sink();
    let p = builder(&sink.endpoint())
        .header("x-api-key", "secret-value")
        .request_timeout(Duration::from_millis(2500))
        .start()
        .unwrap();
    record_n(&p, 1, 3);
    p.shutdown(Duration::from_secs(5)).unwrap();
    let h = sink.last_headers().expect("a request arrived");
    assert_eq!(h.get("x-api-key").unwrap(), "secret-value");
    assert_eq!(h.get("user-agent").unwrap(), otlpflow::USER_AGENT);
    assert_eq!(h.get("grpc-timeout").unwrap(), "2500m");
    assert_eq!(h.get("content-type").unwrap(), "application/grpc");
}

#[test]
fn the_ingest_rate_limit_refuses_and_counts_the_excess() {
    let sink = keeping_sink();
    // 1000 records per second with a burst of 50: a tight loop of 2000
    // records gets the burst and whatever the rate refills meanwhile.
    let p = builder(&sink.endpoint())
        .rate_limit(1000.0, 50)
        .start()
        .unwrap();
    let scope = p.scope("itest", "1");
    let t = Instant::now();
    let mut accepted = 0u64;
    for i in 0..2000 {
        match workload::record_benchmark_span(&p, &scope, 1, i, 1) {
            Ok(()) => accepted += 1,
            Err(e) => assert_eq!(e, RecordError::RateLimited),
        }
    }
    let bound = 50.0 + 1000.0 * t.elapsed().as_secs_f64();
    assert!(accepted as f64 <= bound + 1.0, "{accepted} > {bound}");
    assert!(accepted >= 50);
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_identity(&s);
    assert_eq!(
        s.dropped[otlpflow::DropReason::RateLimited],
        2000 - accepted
    );
    assert_eq!(s.exported, accepted);
    assert_eq!(sink.counts().spans, accepted);
}

#[test]
fn the_batch_size_adapts_to_hold_the_latency_target() {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 16 },
        ..SinkOptions::default()
    })
    .unwrap();
    // A slow receiver: every request takes 100 ms, the target is 10 ms.
    sink.inject(otlpflow::sink::Fault::Delay(Duration::from_millis(100)), 60);
    let p = builder(&sink.endpoint())
        .workers(1)
        .shards(1)
        .max_batch_items(256)
        .max_in_flight(8)
        .adaptive_batch(16, Duration::from_millis(10))
        .start()
        .unwrap();
    assert_eq!(p.stats().batch_target, 256);
    let scope = p.scope("itest", "1");
    let mut i = 0;
    let t = Instant::now();
    while p.stats().batch_target > 16 && t.elapsed() < Duration::from_secs(20) {
        for _ in 0..200 {
            workload::record_benchmark_span(&p, &scope, 1, i, 1).unwrap();
            i += 1;
        }
        p.flush(Duration::from_secs(10)).unwrap();
    }
    assert_eq!(
        p.stats().batch_target,
        16,
        "shrank to the minimum under slow replies"
    );
    // The delays are used up: fast replies let it grow again.
    let t = Instant::now();
    while p.stats().batch_target < 64 && t.elapsed() < Duration::from_secs(20) {
        for _ in 0..200 {
            workload::record_benchmark_span(&p, &scope, 1, i, 1).unwrap();
            i += 1;
        }
        p.flush(Duration::from_secs(10)).unwrap();
    }
    assert!(
        p.stats().batch_target >= 64,
        "grew back: {}",
        p.stats().batch_target
    );
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.exported, i);
    assert_eq!(sink.counts().spans, i);
}

#[test]
fn the_prometheus_endpoint_serves_the_same_numbers_as_stats() {
    let sink = keeping_sink();
    let p = builder(&sink.endpoint())
        .prometheus("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap();
    record_n(&p, 2, 150);
    let s = p.flush(Duration::from_secs(10)).unwrap();
    let addr = p.prometheus_addr().unwrap();
    let scrape = |path: &str| support::get(addr, path);
    let text = scrape("/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Parse every sample line: name{labels} value.
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().skip_while(|l| !l.is_empty()).skip(1) {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("a sample line");
        samples.insert(name.to_owned(), value.parse::<f64>().expect("a number"));
    }
    assert_eq!(
        samples["otlpflow_records_exported_total"],
        s.exported as f64
    );
    assert_eq!(
        samples["otlpflow_records_exported_total"],
        sink.counts().spans as f64
    );
    assert_eq!(samples["otlpflow_records_offered_total"], 300.0);
    assert_eq!(
        samples["otlpflow_records_dropped_total{reason=\"full\"}"],
        0.0
    );
    assert_eq!(samples["otlpflow_records_in_flight"], 0.0);
    assert_eq!(samples["otlpflow_health"], 0.0);
    assert_eq!(
        samples["otlpflow_export_latency_seconds_count"],
        s.export_latency.count as f64
    );
    // End-to-end latency is sampled (1 in 64 per shard): 300 records gave
    // a few samples, each at least an export round trip long.
    assert_eq!(
        samples["otlpflow_end_to_end_latency_seconds_count"],
        s.e2e_latency.count as f64
    );
    assert!(s.e2e_latency.count >= 1, "{s:?}");
    assert!(s.e2e_latency.max_ns > 0);
    // One fill gauge per shard.
    assert!(samples.contains_key("otlpflow_ring_fill_ratio{shard=\"0\"}"));
    assert!(samples.contains_key("otlpflow_ring_fill_ratio{shard=\"1\"}"));
    assert_eq!(p.ring_fill().len(), 2);
    assert!(scrape("/nope").starts_with("HTTP/1.1 404"));
    p.shutdown(Duration::from_secs(5)).unwrap();
    drop(p);
    // The endpoint went away with the pipeline.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn self_metrics_travel_through_the_pipeline_as_otlp_metrics() {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value as N};
    let sink = keeping_sink();
    let p = builder(&sink.endpoint())
        .self_metrics(true)
        .metrics_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    record_n(&p, 2, 200);
    std::thread::sleep(Duration::from_millis(120));
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_identity(&s);
    assert_eq!(s.accepted_by_signal.traces, 400);
    // The last collection (at shutdown) saw every span processed.
    let mut processed = Vec::new();
    let mut names = HashSet::new();
    for req in sink.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                assert_eq!(sm.scope.expect("scope").name, "otlpflow");
                for m in sm.metrics {
                    names.insert(m.name.clone());
                    if m.name == "otel.sdk.processor.span.processed" {
                        let Some(Data::Sum(sum)) = m.data else {
                            panic!()
                        };
                        assert!(sum.is_monotonic);
                        for dp in sum.data_points {
                            let Some(N::AsInt(v)) = dp.value else {
                                panic!()
                            };
                            processed.push(v);
                        }
                    }
                }
            }
        }
    }
    assert!(
        processed.len() >= 2,
        "periodic and final collections: {processed:?}"
    );
    assert_eq!(*processed.iter().max().unwrap(), 400, "{processed:?}");
    for name in [
        "otel.sdk.exporter.span.exported",
        "otel.sdk.processor.log.processed",
        "otlpflow.records.dropped",
        "otlpflow.records.failed",
        "otlpflow.export.concurrency_limit",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    // The self-metric points themselves are records: exported and counted.
    assert_eq!(s.exported_by_signal.metrics, sink.counts().metric_points);
    assert!(s.exported_by_signal.metrics > 0);
}
