//! The transport over real loopback sockets: every protocol with every
//! compression delivers each span exactly once, and the OTLP retry rules
//! hold against faults injected by the embedded receiver.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use otlpflow::sink::{Fault, Sink, SinkOptions, Verify};
use otlpflow::{
    workload, Compression, HttpVersion, Pipeline, Policy, Protocol, RetryConfig, Stats,
};

#[derive(Debug, Clone, Copy)]
enum Wire {
    Grpc,
    Http1,
    Http2,
}

fn sink() -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SinkOptions::default()
    })
    .expect("sink starts")
}

fn pipeline(sink: &Sink, wire: Wire, compression: Compression) -> Pipeline {
    let b = Pipeline::builder()
        .service_name("transport-test")
        .shards(2)
        .workers(2)
        .max_batch_items(100)
        .linger(Duration::from_millis(5))
        .compression(compression)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(10),
            multiplier: 2.0,
        });
    wired(b, sink, wire).start().unwrap()
}

/// Points a builder at the sink over `wire`.
fn wired(b: otlpflow::PipelineBuilder, sink: &Sink, wire: Wire) -> otlpflow::PipelineBuilder {
    match wire {
        Wire::Grpc => b.endpoint(sink.endpoint()),
        Wire::Http1 | Wire::Http2 => b
            .protocol(Protocol::HttpProtobuf)
            .endpoint(sink.http_endpoint().unwrap())
            .http_version(if matches!(wire, Wire::Http2) {
                HttpVersion::Http2
            } else {
                HttpVersion::Http1
            }),
    }
}

fn record(p: &Pipeline, seed: u64, n: u64) {
    let scope = p.scope("transport", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, seed, i, 1_700_000_000_000_000_000).unwrap();
    }
}

fn assert_identity(s: &Stats) {
    if let Err(e) = s.check_identity() {
        panic!("accounting identity: {e}: {s:?}");
    }
}

#[test]
fn every_protocol_and_compression_delivers_each_span_once() {
    for wire in [Wire::Grpc, Wire::Http1, Wire::Http2] {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let sink = sink();
            let p = pipeline(&sink, wire, compression);
            std::thread::scope(|s| {
                for t in 0..3 {
                    let p = &p;
                    s.spawn(move || record(p, t + 1, 700));
                }
            });
            let s = p.shutdown(Duration::from_secs(20)).unwrap();
            assert_identity(&s);
            assert_eq!(
                (s.exported, s.failed.total()),
                (2100, 0),
                "{wire:?} {compression:?}"
            );
            let mut ids = HashSet::new();
            for req in sink.take_requests() {
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        for span in ss.spans {
                            assert!(
                                ids.insert(span.span_id),
                                "duplicate span over {wire:?} {compression:?}"
                            );
                        }
                    }
                }
            }
            assert_eq!(ids.len(), 2100, "{wire:?} {compression:?}");
            let h = sink.last_headers().unwrap();
            assert_eq!(h.get("user-agent").unwrap(), otlpflow::USER_AGENT);
            if let Wire::Http1 | Wire::Http2 = wire {
                assert_eq!(h.get("content-type").unwrap(), "application/x-protobuf");
                assert_eq!(
                    h.get("content-encoding")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    compression.token().map(str::to_owned)
                );
            }
        }
    }
}

/// Records `n` spans with `fault` injected `times` times; returns the stats
/// after a flush and how long the flush took.
fn with_fault(wire: Wire, fault: Fault, times: usize, n: u64) -> (Stats, Duration, Sink) {
    let sink = sink();
    sink.inject(fault, times);
    let p = Pipeline::builder()
        .service_name("fault-test")
        .shards(1)
        .workers(1)
        .max_batch_items(1000)
        .linger(Duration::from_millis(5))
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(10),
            multiplier: 2.0,
        })
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        });
    let p = wired(p, &sink, wire).start().unwrap();
    record(&p, 9, n);
    let t = Instant::now();
    let s = p.flush(Duration::from_secs(15)).unwrap();
    let took = t.elapsed();
    let s2 = p.shutdown(Duration::from_secs(5)).unwrap();
    assert_identity(&s2);
    assert_eq!(s2.in_flight, 0);
    (s, took, sink)
}

#[test]
fn retryable_grpc_codes_are_retried_and_delivered() {
    for code in [1, 4, 10, 11, 14, 15] {
        let (s, _, sink) = with_fault(
            Wire::Grpc,
            Fault::GrpcStatus {
                code,
                retry_info: None,
            },
            2,
            50,
        );
        assert_eq!(
            (s.exported, s.failed.total()),
            (50, 0),
            "code {code}: {s:?}"
        );
        assert!(s.retries >= 2, "code {code}: {s:?}");
        assert_eq!(sink.counts().spans, 50);
    }
}

#[test]
fn permanent_grpc_codes_fail_without_retry() {
    for code in [2, 3, 7, 8, 12, 13, 16] {
        let (s, _, sink) = with_fault(
            Wire::Grpc,
            Fault::GrpcStatus {
                code,
                retry_info: None,
            },
            1,
            50,
        );
        assert_eq!(
            (s.exported, s.failed.total(), s.retries),
            (0, 50, 0),
            "code {code}: {s:?}"
        );
        assert_eq!(s.failed[otlpflow::FailReason::Permanent], 50);
        assert_eq!(sink.counts().spans, 0);
    }
}

#[test]
fn resource_exhausted_with_retry_info_waits_as_told() {
    let delay = Duration::from_millis(300);
    let (s, took, _) = with_fault(
        Wire::Grpc,
        Fault::GrpcStatus {
            code: 8,
            retry_info: Some(delay),
        },
        1,
        20,
    );
    assert_eq!(
        (s.exported, s.failed.total(), s.retries),
        (20, 0, 1),
        "{s:?}"
    );
    // The retry waited for the server's delay, not our 5 ms backoff.
    assert!(
        took >= delay,
        "retried after {took:?}, RetryInfo said {delay:?}"
    );
}

#[test]
fn retryable_http_statuses_honour_retry_after() {
    for wire in [Wire::Http1, Wire::Http2, Wire::Grpc] {
        for status in [429, 502, 503, 504] {
            let (s, _, sink) = with_fault(
                wire,
                Fault::HttpStatus {
                    status,
                    retry_after: None,
                },
                2,
                30,
            );
            assert_eq!(
                (s.exported, s.failed.total()),
                (30, 0),
                "{wire:?} {status}: {s:?}"
            );
            assert_eq!(sink.counts().spans, 30);
        }
    }
    // Retry-After in seconds is honoured.
    let (s, took, _) = with_fault(
        Wire::Http1,
        Fault::HttpStatus {
            status: 429,
            retry_after: Some("1".into()),
        },
        1,
        10,
    );
    assert_eq!((s.exported, s.retries), (10, 1));
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After: 1 but retried after {took:?}"
    );
    // ... and as an HTTP date (whole seconds: at least the remainder).
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    let (s, took, _) = with_fault(
        Wire::Http2,
        Fault::HttpStatus {
            status: 503,
            retry_after: Some(when),
        },
        1,
        10,
    );
    assert_eq!((s.exported, s.retries), (10, 1));
    assert!(took >= Duration::from_millis(900), "retried after {took:?}");
}

#[test]
fn permanent_http_statuses_fail_without_retry() {
    for status in [400, 401, 403, 404, 413, 500] {
        let (s, _, _) = with_fault(
            Wire::Http1,
            Fault::HttpStatus {
                status,
                retry_after: None,
            },
            1,
            25,
        );
        assert_eq!(
            (s.exported, s.failed.total(), s.retries),
            (0, 25, 0),
            "{status}: {s:?}"
        );
    }
}

#[test]
fn partial_success_is_counted_and_not_retried() {
    for wire in [Wire::Grpc, Wire::Http1] {
        let (s, _, sink) = with_fault(
            wire,
            Fault::PartialSuccess {
                rejected: 7,
                message: "7 spans too old".into(),
            },
            1,
            40,
        );
        assert_eq!(
            (s.exported, s.rejected, s.failed.total(), s.retries),
            (33, 7, 0, 0),
            "{wire:?}: {s:?}"
        );
        assert_eq!(sink.counts().spans, 33);
    }
}

#[test]
fn resets_and_goaway_lose_nothing() {
    for wire in [Wire::Grpc, Wire::Http1, Wire::Http2] {
        let (s, _, sink) = with_fault(wire, Fault::Reset, 2, 60);
        assert_eq!(
            (s.exported, s.failed.total()),
            (60, 0),
            "reset over {wire:?}: {s:?}"
        );
        assert_eq!(sink.counts().spans, 60);
    }
    // GOAWAY after the first request: the next requests reconnect.
    let sink = sink();
    sink.inject(Fault::GoAway, 1);
    let p = pipeline(&sink, Wire::Grpc, Compression::None);
    for round in 0..3 {
        record(&p, round, 200);
        let s = p.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(s.failed.total(), 0, "{s:?}");
    }
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((s.exported, s.failed.total()), (600, 0));
    assert_eq!(sink.counts().spans, 600);
    assert!(
        sink.counts().connections >= 2,
        "GOAWAY made the client reconnect"
    );
}

#[test]
fn a_refused_encoding_is_a_clear_configuration_error() {
    let sink = sink();
    sink.inject(
        Fault::HttpStatus {
            status: 415,
            retry_after: None,
        },
        1,
    );
    let p = pipeline(&sink, Wire::Http1, Compression::Zstd);
    record(&p, 1, 5);
    let s = p.flush(Duration::from_secs(5)).unwrap();
    assert_eq!((s.failed.total(), s.retries), (5, 0));
    let e = p.last_error().unwrap();
    assert!(
        e.contains("configuration error") && e.contains("zstd"),
        "{e}"
    );
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn requests_never_exceed_the_size_limit_and_oversize_records_are_refused() {
    let sink = sink();
    let limit = 16 * 1024;
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .shards(1)
        .workers(1)
        .max_request_bytes(limit)
        .max_batch_items(10_000)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .unwrap();
    record(&p, 3, 1000);
    let big = "x".repeat(limit);
    let attrs = [otlpflow::KeyValue::new("big", otlpflow::Value::Str(&big))];
    let span = otlpflow::Span {
        trace_id: [1; 16],
        span_id: [2; 8],
        attributes: &attrs,
        ..Default::default()
    };
    let scope = p.scope("transport", "1");
    assert_eq!(
        p.record_span(&scope, &span),
        Err(otlpflow::RecordError::TooLarge)
    );
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_identity(&s);
    assert_eq!(
        (s.exported, s.dropped[otlpflow::DropReason::TooLarge]),
        (1000, 1),
        "{s:?}"
    );
    let c = sink.counts();
    assert_eq!(c.spans, 1000);
    assert!(
        c.max_request_bytes as usize <= limit,
        "a request of {} bytes",
        c.max_request_bytes
    );
    assert!(
        c.requests >= 1000 * 290 / limit as u64,
        "the batch was split into {} requests",
        c.requests
    );
}

fn pool_pipeline(sink: &Sink) -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .endpoint(sink.endpoint())
        .shards(1)
        .workers(1)
        .max_batch_items(100)
        .linger(Duration::from_millis(2))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
}

#[test]
fn a_worker_spreads_requests_over_its_k_connections() {
    let sink = sink();
    let p = pool_pipeline(&sink)
        .connections_per_worker(3)
        .start()
        .unwrap();
    record(&p, 1, 3000);
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.exported, 3000);
    assert_eq!(sink.counts().connections, 3);
}

#[test]
fn idle_connections_close_and_pinged_ones_stay() {
    // Idle past the timeout: the next batch opens a new connection.
    let sink = sink();
    let p = pool_pipeline(&sink)
        .keepalive(Duration::ZERO)
        .idle_timeout(Duration::from_millis(150))
        .start()
        .unwrap();
    record(&p, 1, 100);
    p.flush(Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    record(&p, 2, 100);
    let s = p.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(s.exported, 200);
    assert_eq!(
        sink.counts().connections,
        2,
        "the idle connection was closed"
    );
    // Kept alive by PING (answered): the same connection serves both.
    let sink = self::sink();
    let p = pool_pipeline(&sink)
        .keepalive(Duration::from_millis(50))
        .idle_timeout(Duration::ZERO)
        .start()
        .unwrap();
    record(&p, 1, 100);
    p.flush(Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    record(&p, 2, 100);
    let s = p.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(s.exported, 200);
    assert_eq!(sink.counts().connections, 1, "PINGs kept the connection");
}

#[test]
fn redirects_within_the_endpoints_origin_are_followed_and_others_reported() {
    // The OTLP specification leaves other answers to HTTP: a 307 or 308
    // repeats the POST at its Location (a 3xx used to fail the batch for
    // good). Here a relative and an absolute Location, two hops.
    for wire in [Wire::Http1, Wire::Http2] {
        let sink = sink();
        let base = sink.http_endpoint().unwrap();
        let redirect = |status: u16, location: &str| Fault::Redirect {
            status,
            location: location.to_owned(),
        };
        sink.inject(redirect(307, "/v1/traces?moved=1"), 1);
        sink.inject(redirect(308, &format!("{base}/v1/traces?moved=2")), 1);
        let (s, error) = redirected(&sink, wire);
        assert_eq!(
            (s.exported, s.failed.total(), s.retries),
            (25, 0, 0),
            "{wire:?}: {s:?} {error:?}"
        );
        assert_eq!(sink.counts().spans, 25);
        let target = sink.last_http_target();
        assert_eq!(target.as_deref(), Some("/v1/traces?moved=2"), "{wire:?}");
    }
    // Not followed, each a permanent failure naming why: a 301 (it turns
    // the POST into a GET), another port (otlpflow's headers go to the
    // endpoint's origin only), more than five hops.
    let other = |sink: &Sink| {
        let port = sink
            .http_endpoint()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let other: u16 = port.parse::<u16>().unwrap() ^ 1;
        format!("http://127.0.0.1:{other}/v1/traces")
    };
    for (case, want) in [
        ("301", "not followed: only 307 and 308 repeat a POST"),
        ("origin", "only to the endpoint's scheme, host and port"),
        ("loop", "more than 5 redirects"),
    ] {
        let sink = sink();
        let (status, location, times) = match case {
            "301" => (301, "/v1/traces".to_owned(), 1),
            "origin" => (307, other(&sink), 1),
            _ => (308, "/v1/traces".to_owned(), 6),
        };
        sink.inject(Fault::Redirect { status, location }, times);
        let (s, error) = redirected(&sink, Wire::Http1);
        assert_eq!(
            (s.exported, s.failed.total(), s.retries),
            (0, 25, 0),
            "{case}: {s:?}"
        );
        let error = error.unwrap_or_default();
        assert!(error.contains(want), "{case}: {error}");
    }
}

/// 25 spans to `sink` over `wire`: the stats after a flush, and the last
/// error.
fn redirected(sink: &Sink, wire: Wire) -> (Stats, Option<String>) {
    let b = Pipeline::builder()
        .shards(1)
        .workers(1)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        });
    let p = wired(b, sink, wire).start().unwrap();
    record(&p, 3, 25);
    let s = p.flush(Duration::from_secs(15)).unwrap();
    let error = p.last_error();
    p.shutdown(Duration::from_secs(5)).unwrap();
    (s, error)
}
