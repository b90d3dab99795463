//! Logs and metrics end to end over both protocols, to the embedded
//! receiver, which decodes every request with the opentelemetry-proto types:
//! exact counts, and the values as recorded.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as PValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as PNumber;
use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{
    HistogramPoint, KeyValue, LogRecord, MetricData, MetricPoint, Number, Pipeline, Policy,
    Protocol, RecordError, Severity, Temporality, Value,
};

fn sink() -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        http_addr: Some("127.0.0.1:0".parse().expect("addr")),
        ..SinkOptions::default()
    })
    .expect("sink")
}

fn pipeline(sink: &Sink, protocol: Protocol) -> Pipeline {
    let endpoint = match protocol {
        Protocol::Grpc => sink.endpoint(),
        Protocol::HttpProtobuf => sink.http_endpoint().expect("http"),
    };
    Pipeline::builder()
        .endpoint(endpoint)
        .protocol(protocol)
        .service_name("signals")
        .shards(2)
        .workers(2)
        .max_batch_items(64)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .expect("start")
}

/// Log record `seq`'s body: mostly short; some longer than 127 bytes (a
/// two-byte length) and some longer than the 16 KiB a record is first
/// encoded into (sized first and written in place instead).
fn body_of(seq: i64) -> String {
    let body = format!("request {seq} served");
    match seq % 500 {
        0 => body + &"x".repeat(20_000),
        1 => body + &"y".repeat(200),
        _ => body,
    }
}

#[test]
fn log_records_arrive_exactly_once_with_their_fields_over_both_protocols() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let sink = sink();
        let p = pipeline(&sink, protocol);
        let scope = p.scope("signals.logs", "1.0");
        let n = 3_000u64;
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let p = p.clone();
                s.spawn(move || {
                    for i in 0..n / 2 {
                        let seq = (t * n + i) as i64;
                        let attrs = [
                            KeyValue::new("seq", Value::I64(seq)),
                            KeyValue::new("thread", Value::I64(t as i64)),
                        ];
                        let body = body_of(seq);
                        let log = LogRecord {
                            time_unix_nano: 1_700_000_000_000_000_000 + seq as u64,
                            observed_time_unix_nano: 1_700_000_000_000_000_001 + seq as u64,
                            severity_number: Severity::WARN,
                            severity_text: "WARN",
                            body: Some(Value::Str(&body)),
                            attributes: &attrs,
                            trace_id: [7; 16],
                            span_id: [9; 8],
                            flags: 1,
                            event_name: "served",
                            ..LogRecord::default()
                        };
                        p.record_log(&scope, &log).expect("recorded");
                    }
                });
            }
        });
        let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
        assert_eq!(s.accepted_by_signal.to_array(), [0, n, 0], "{s:?}");
        assert_eq!(s.exported_by_signal.to_array(), [0, n, 0], "{s:?}");
        assert_eq!(sink.counts().logs, n, "{protocol:?}");
        assert_eq!(sink.counts().spans, 0);
        let mut seen = std::collections::HashSet::new();
        for req in sink.take_log_requests() {
            for rl in req.resource_logs {
                for sl in rl.scope_logs {
                    assert_eq!(sl.scope.expect("scope").name, "signals.logs");
                    for l in sl.log_records {
                        let seq = match l.attributes[0]
                            .value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                        {
                            Some(PValue::IntValue(v)) => *v,
                            other => panic!("seq {other:?}"),
                        };
                        assert!(seen.insert(seq), "log {seq} twice");
                        assert_eq!(l.time_unix_nano, 1_700_000_000_000_000_000 + seq as u64);
                        assert_eq!(l.observed_time_unix_nano, l.time_unix_nano + 1);
                        assert_eq!(l.severity_number, 13);
                        assert_eq!(l.severity_text, "WARN");
                        assert_eq!(l.event_name, "served");
                        assert_eq!(l.flags, 1);
                        assert_eq!(l.trace_id, vec![7; 16]);
                        assert_eq!(l.span_id, vec![9; 8]);
                        match l.body.and_then(|b| b.value) {
                            Some(PValue::StringValue(b)) => assert_eq!(b, body_of(seq)),
                            other => panic!("body {other:?}"),
                        }
                    }
                }
            }
        }
        assert_eq!(seen.len() as u64, n);
    }
}

#[test]
fn metric_points_are_grouped_by_metric_and_arrive_exactly_once() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let sink = sink();
        let p = pipeline(&sink, protocol);
        let scope = p.scope("signals.metrics", "1.0");
        let bounds = [1.0, 10.0, 100.0];
        let per_kind = 500u64;
        for i in 0..per_kind {
            let route = format!("/r/{}", i % 7);
            let attrs = [KeyValue::new("route", Value::Str(&route))];
            let t = 1_700_000_000_000_000_000 + i;
            let common = |data| MetricPoint {
                name: "",
                description: "",
                unit: "",
                attribute_set: None,
                attributes: &attrs,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                time_unix_nano: t,
                flags: 0,
                data,
            };
            let gauge = MetricPoint {
                name: "queue.depth",
                unit: "{item}",
                ..common(MetricData::Gauge(Number::I64(i as i64)))
            };
            let sum = MetricPoint {
                name: "requests",
                description: "requests served",
                unit: "{request}",
                ..common(MetricData::Sum {
                    value: Number::F64(i as f64 + 0.5),
                    monotonic: true,
                    temporality: Temporality::Cumulative,
                })
            };
            let counts = [i % 3, 1, 0, 2];
            let hist = MetricPoint {
                name: "latency",
                unit: "ms",
                ..common(MetricData::Histogram {
                    point: HistogramPoint {
                        count: counts.iter().sum(),
                        sum: Some(42.5),
                        min: Some(0.5),
                        max: Some(250.0),
                        bounds: &bounds,
                        bucket_counts: &counts,
                    },
                    temporality: Temporality::Delta,
                })
            };
            for point in [gauge, sum, hist] {
                p.record_metric(&scope, &point).expect("recorded");
            }
        }
        // A malformed point is refused and counted, never sent.
        let bad = MetricPoint {
            name: "bad",
            description: "",
            unit: "",
            attribute_set: None,
            attributes: &[],
            start_time_unix_nano: 0,
            time_unix_nano: 1,
            flags: 0,
            data: MetricData::Histogram {
                point: HistogramPoint {
                    count: 1,
                    bounds: &bounds,
                    bucket_counts: &[1],
                    ..HistogramPoint::default()
                },
                temporality: Temporality::Delta,
            },
        };
        assert_eq!(p.record_metric(&scope, &bad), Err(RecordError::Invalid));
        let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
        let n = 3 * per_kind;
        assert_eq!(s.exported_by_signal.to_array(), [0, 0, n], "{s:?}");
        assert_eq!(s.dropped[otlpflow::DropReason::Invalid], 1);
        assert_eq!(sink.counts().metric_points, n, "{protocol:?}");
        let (mut gauges, mut sums, mut hists) = (0, 0, 0);
        for req in sink.take_metric_requests() {
            for rm in req.resource_metrics {
                for sm in rm.scope_metrics {
                    // The receiver already refused a scope naming a metric
                    // twice; here each metric is checked for its content.
                    for m in sm.metrics {
                        match (m.name.as_str(), m.data.expect("data")) {
                            ("queue.depth", Data::Gauge(g)) => {
                                assert_eq!(m.unit, "{item}");
                                for dp in g.data_points {
                                    let Some(PNumber::AsInt(v)) = dp.value else {
                                        panic!("{:?}", dp.value)
                                    };
                                    assert_eq!(
                                        dp.time_unix_nano,
                                        1_700_000_000_000_000_000 + v as u64
                                    );
                                    gauges += 1;
                                }
                            }
                            ("requests", Data::Sum(s)) => {
                                assert!(s.is_monotonic);
                                assert_eq!(s.aggregation_temporality, 2);
                                assert_eq!(m.description, "requests served");
                                for dp in s.data_points {
                                    assert!(
                                        matches!(dp.value, Some(PNumber::AsDouble(v)) if v.fract() == 0.5)
                                    );
                                    sums += 1;
                                }
                            }
                            ("latency", Data::Histogram(h)) => {
                                assert_eq!(h.aggregation_temporality, 1);
                                for dp in h.data_points {
                                    assert_eq!(dp.explicit_bounds, bounds.to_vec());
                                    assert_eq!(dp.sum, Some(42.5));
                                    assert_eq!((dp.min, dp.max), (Some(0.5), Some(250.0)));
                                    assert_eq!(dp.attributes.len(), 1);
                                    hists += 1;
                                }
                            }
                            (name, data) => panic!("unexpected {name}: {data:?}"),
                        }
                    }
                }
            }
        }
        assert_eq!((gauges, sums, hists), (per_kind, per_kind, per_kind));
    }
}

#[test]
fn each_signal_goes_to_its_own_endpoint_with_its_own_settings() {
    // Logs to a second receiver with their own header and compression;
    // traces and metrics to the first.
    let main = sink();
    let logs = sink();
    let p = Pipeline::builder()
        .endpoint(main.endpoint())
        .logs_endpoint(logs.endpoint())
        .signal_header(otlpflow::Signal::Logs, "x-tenant", "logs-team")
        .signal_compression(otlpflow::Signal::Logs, otlpflow::Compression::Zstd)
        .service_name("signals")
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .expect("start");
    record_logs_and_spans(&p, 100);
    p.shutdown(Duration::from_secs(10)).expect("shutdown");
    assert_eq!((main.counts().spans, main.counts().logs), (100, 0));
    assert_eq!((logs.counts().spans, logs.counts().logs), (0, 100));
    let h = logs.last_headers().expect("headers");
    assert_eq!(h.get("x-tenant").expect("header"), "logs-team");
    assert_eq!(h.get("grpc-encoding").expect("encoding"), "zstd");
    let h = main.last_headers().expect("headers");
    assert!(h.get("x-tenant").is_none());
}

#[test]
fn exponential_histogram_points_arrive_and_malformed_ones_are_refused() {
    use otlpflow::{ExpBuckets, ExpHistogramPoint};
    let sink = sink();
    let p = pipeline(&sink, Protocol::Grpc);
    let scope = p.scope("signals.exp", "1");
    let point = |count, scale| MetricPoint {
        name: "rpc.duration",
        description: "",
        unit: "ms",
        attribute_set: None,
        attributes: &[],
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        flags: 0,
        data: MetricData::ExponentialHistogram {
            point: ExpHistogramPoint {
                count,
                sum: Some(12.5),
                min: Some(0.0),
                max: Some(9.0),
                scale,
                zero_count: 1,
                zero_threshold: 0.0,
                positive: ExpBuckets {
                    offset: -2,
                    counts: &[1, 0, 3],
                },
                negative: ExpBuckets {
                    offset: 0,
                    counts: &[],
                },
            },
            temporality: Temporality::Delta,
        },
    };
    for _ in 0..10 {
        p.record_metric(&scope, &point(5, 3)).expect("recorded");
    }
    assert_eq!(
        p.record_metric(&scope, &point(6, 3)),
        Err(RecordError::Invalid)
    );
    assert_eq!(
        p.record_metric(&scope, &point(5, 21)),
        Err(RecordError::Invalid)
    );
    let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    assert_eq!(s.exported_by_signal.metrics, 10);
    assert_eq!(s.dropped[otlpflow::DropReason::Invalid], 2);
    assert_eq!(sink.counts().metric_points, 10);
    let mut seen = 0;
    for req in sink.take_metric_requests() {
        for m in &req.resource_metrics[0].scope_metrics[0].metrics {
            let Some(Data::ExponentialHistogram(h)) = &m.data else {
                panic!("{m:?}")
            };
            assert_eq!(h.aggregation_temporality, 1);
            for dp in &h.data_points {
                let pos = dp.positive.as_ref().expect("positive buckets");
                assert_eq!((pos.offset, &pos.bucket_counts[..]), (-2, &[1, 0, 3][..]));
                assert_eq!((dp.scale, dp.count, dp.zero_count), (3, 5, 1));
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 10);
}

#[test]
fn each_signal_may_use_its_own_protocol_set_by_the_environment() {
    // Traces over gRPC to one receiver; logs over OTLP/HTTP to another's
    // HTTP port, chosen by OTEL_EXPORTER_OTLP_LOGS_PROTOCOL (a log record
    // sent over gRPC to that port would fail and be counted).
    let grpc = sink();
    let http = sink();
    let logs_url = format!("{}/v1/logs", http.http_endpoint().expect("http"));
    let env = |k: &str| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(grpc.endpoint()),
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" => Some(logs_url.clone()),
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL" => Some("http/protobuf".to_owned()),
        _ => None,
    };
    let p = Pipeline::builder()
        .apply_env_from(env)
        .expect("env")
        .service_name("signals")
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .expect("start");
    record_logs_and_spans(&p, 100);
    let stats = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    assert_eq!(stats.failed.total(), 0, "{:?}", p.last_error());
    assert_eq!((grpc.counts().spans, grpc.counts().logs), (100, 0));
    assert_eq!((http.counts().spans, http.counts().logs), (0, 100));
    assert_eq!(http.counts().errors, 0);
}

/// Records `n` log records and `n` benchmark spans.
fn record_logs_and_spans(p: &Pipeline, n: i64) {
    let scope = p.scope("signals", "1");
    for i in 0..n {
        let log = LogRecord {
            severity_number: Severity::INFO,
            body: Some(Value::I64(i)),
            ..LogRecord::default()
        };
        p.record_log(&scope, &log).expect("log");
        otlpflow::workload::record_benchmark_span(p, &scope, 1, i as u64, 1).expect("span");
    }
}

#[test]
fn metric_points_larger_than_the_scratch_space_arrive_whole() {
    // A point is first encoded into 16 KiB of scratch space; a histogram
    // with thousands of buckets is sized first and written in place.
    let sink = sink();
    let p = pipeline(&sink, Protocol::Grpc);
    let scope = p.scope("signals.big", "1.0");
    let mut want = Vec::new();
    for (i, buckets) in [10usize, 900, 1_100, 3_000].into_iter().enumerate() {
        let bounds: Vec<f64> = (0..buckets).map(|b| b as f64 * 0.5).collect();
        let counts: Vec<u64> = (0..=buckets as u64).map(|b| b % 5).collect();
        let name = format!("big.{i}");
        let point = MetricPoint {
            name: &name,
            description: "",
            unit: "ms",
            attribute_set: None,
            attributes: &[],
            start_time_unix_nano: 0,
            time_unix_nano: 1_700_000_000_000_000_000,
            flags: 0,
            data: MetricData::Histogram {
                point: HistogramPoint {
                    count: counts.iter().sum(),
                    bounds: &bounds,
                    bucket_counts: &counts,
                    ..HistogramPoint::default()
                },
                temporality: Temporality::Delta,
            },
        };
        p.record_metric(&scope, &point).expect("recorded");
        want.push((name, bounds, counts));
    }
    let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    assert_eq!(s.exported, want.len() as u64, "{s:?}");
    let mut got = Vec::new();
    for req in sink.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let Some(Data::Histogram(h)) = m.data else {
                        panic!("{} is not a histogram", m.name)
                    };
                    for dp in h.data_points {
                        got.push((m.name.clone(), dp.explicit_bounds, dp.bucket_counts));
                    }
                }
            }
        }
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
}
