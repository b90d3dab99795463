//! Span templates and attribute sets end to end: spans, logs and metric
//! points recorded through them cross a real pipeline and loopback socket
//! to the embedded receiver, which decodes them (prost) to exactly what the
//! plain record calls deliver for the same data.

use std::time::Duration;

mod support;
use support::keeping_sink;

use opentelemetry_proto::tonic::trace::v1 as pt;
use otlpflow::sink::Sink;
use otlpflow::{
    workload, AttributeSet, KeyValue, LogRecord, MetricData, MetricPoint, Number, Pipeline, Policy,
    Severity, Temporality, Value,
};

const NOW: u64 = 1_700_000_000_000_000_000;

fn pipeline(sink: &Sink) -> Pipeline {
    Pipeline::builder()
        .endpoint(sink.endpoint())
        .workers(1)
        .shards(1)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(30),
        })
        .start()
        .expect("pipeline starts")
}

/// Every span the receiver kept, in arrival order.
fn received_spans(sink: &Sink) -> Vec<pt::Span> {
    sink.take_requests()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

#[test]
fn templated_spans_arrive_as_the_plain_spans_they_stand_for() {
    const N: u64 = 2_000;
    let run = |templated: bool| -> Vec<pt::Span> {
        let sink = keeping_sink();
        let p = pipeline(&sink);
        let scope = p.scope("templates", "1");
        let template = workload::benchmark_template(&p, &scope);
        for i in 0..N {
            if templated {
                workload::record_templated_benchmark_span(&p, &template, 3, i, NOW + i)
            } else {
                workload::record_benchmark_span(&p, &scope, 3, i, NOW + i)
            }
            .unwrap();
        }
        let stats = p.shutdown(Duration::from_secs(30)).unwrap();
        assert_eq!(stats.exported, N);
        assert_eq!(stats.dropped.total(), 0);
        received_spans(&sink)
    };
    // Requests in flight at once may arrive in any order: compare by span id.
    let sorted = |mut v: Vec<pt::Span>| {
        v.sort_by(|a, b| a.span_id.cmp(&b.span_id));
        v
    };
    let plain = sorted(run(false));
    let templated = sorted(run(true));
    assert_eq!(plain.len(), N as usize);
    assert_eq!(templated.len(), plain.len());
    for (t, p) in templated.iter().zip(&plain) {
        assert_eq!(t, p);
    }
    // What the template put there: its name, kind and four attributes
    // before the span's own item id.
    let s = &templated[7];
    assert_eq!(s.name, "GET /api/v1/items/{id}");
    assert_eq!(s.kind, pt::span::SpanKind::Server as i32);
    let keys: Vec<_> = s.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "http.request.method",
            "url.path",
            "server.address",
            "http.response.status_code",
            "app.item_id"
        ]
    );
}

#[test]
fn a_template_of_another_pipeline_is_refused_and_counted() {
    let sink = keeping_sink();
    let a = pipeline(&sink);
    let b = pipeline(&sink);
    let template = workload::benchmark_template(&a, &a.scope("a", "1"));
    let err = workload::record_templated_benchmark_span(&b, &template, 1, 1, NOW).unwrap_err();
    assert_eq!(err, otlpflow::RecordError::InvalidScope);
    let stats = b.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(stats.dropped.total(), 1);
    a.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn one_attribute_set_serves_logs_and_metric_points() {
    let sink = keeping_sink();
    let p = pipeline(&sink);
    let scope = p.scope("templates", "1");
    let set = AttributeSet::new(&[
        KeyValue::new("http.route", Value::Str("/api/v1/items/{id}")),
        KeyValue::new("region", Value::Str("eu-west-1")),
    ]);
    let own = [KeyValue::new("attempt", Value::I64(2))];
    for i in 0..10 {
        p.record_log(
            &scope,
            &LogRecord {
                time_unix_nano: NOW + i,
                severity_number: Severity::INFO,
                body: Some(Value::Str("served")),
                attribute_set: Some(&set),
                attributes: &own,
                ..Default::default()
            },
        )
        .unwrap();
        p.record_metric(
            &scope,
            &MetricPoint {
                name: "requests",
                description: "",
                unit: "1",
                attribute_set: Some(&set),
                attributes: &own,
                start_time_unix_nano: NOW,
                time_unix_nano: NOW + i,
                flags: 0,
                data: MetricData::Sum {
                    value: Number::I64(i as i64),
                    temporality: Temporality::Cumulative,
                    monotonic: true,
                },
            },
        )
        .unwrap();
    }
    let stats = p.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(stats.dropped.total(), 0);
    let keys = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
        kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>()
    };
    let want = ["http.route", "region", "attempt"];
    let logs: Vec<_> = sink
        .take_log_requests()
        .into_iter()
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    assert_eq!(logs.len(), 10);
    assert!(logs.iter().all(|l| keys(&l.attributes) == want));
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let points: Vec<_> = sink
        .take_metric_requests()
        .into_iter()
        .flat_map(|r| r.resource_metrics)
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .flat_map(|m| match m.data {
            Some(Data::Sum(s)) => s.data_points,
            other => panic!("a sum, not {other:?}"),
        })
        .collect();
    assert_eq!(points.len(), 10);
    assert!(points.iter().all(|p| keys(&p.attributes) == want));
}

#[test]
fn spans_larger_than_the_scratch_space_arrive_whole() {
    // Spans are encoded into 16 KiB of per-thread scratch space in one
    // pass; a larger one is sized first and written in place. Sizes on both
    // sides of the limit, plain and templated, arrive byte for byte.
    let sink = keeping_sink();
    let p = pipeline(&sink);
    let scope = p.scope("templates", "1");
    let template = p.template(&scope, "big", otlpflow::SpanKind::Client, &[]);
    let sizes = [100usize, 16_000, 16_300, 16_384, 17_000, 100_000];
    let mut want = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let text: String = (0..size).map(|j| (b'a' + (j % 26) as u8) as char).collect();
        let attrs = [KeyValue::new("payload", Value::Str(&text))];
        for templated in [false, true] {
            let span_id = ((i * 2 + templated as usize + 1) as u64).to_le_bytes();
            let span = otlpflow::Span {
                trace_id: [7; 16],
                span_id,
                name: "big",
                kind: otlpflow::SpanKind::Client,
                start_time_unix_nano: NOW,
                end_time_unix_nano: NOW + 1,
                attributes: &attrs,
                ..Default::default()
            };
            if templated {
                let per_span = otlpflow::TemplateSpan {
                    attributes: &attrs,
                    ..otlpflow::TemplateSpan::from(&span)
                };
                p.record_templated(&template, &per_span).unwrap();
            } else {
                p.record_span(&scope, &span).unwrap();
            }
            want.push((span_id.to_vec(), text.clone()));
        }
    }
    let stats = p.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(stats.exported, want.len() as u64);
    let mut got: Vec<(Vec<u8>, String)> = received_spans(&sink)
        .into_iter()
        .map(|s| {
            assert_eq!(s.name, "big");
            assert_eq!(s.attributes.len(), 1);
            let v = s.attributes[0].value.clone().and_then(|v| v.value);
            let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text)) =
                v
            else {
                panic!("payload is a string");
            };
            (s.span_id, text)
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
