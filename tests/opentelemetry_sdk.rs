//! The OpenTelemetry Rust SDK with otlpflow's processors: spans made
//! through the OpenTelemetry API reach the receiver exactly as the SDK's own
//! OTLP exporter sends them. One provider feeds both: otlpflow's
//! `SpanProcessor` to one receiver, and opentelemetry-otlp's gRPC exporter
//! (the reference for the mapping) to a second; the spans are compared
//! field by field. Logs through the SDK's logger arrive with their fields.

use std::time::Duration;

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};
use otlpflow::sink::Sink;
use otlpflow::Pipeline;

mod support;

fn sink() -> Sink {
    support::keeping_sink()
}

fn pipeline(sink: &Sink) -> Pipeline {
    support::prompt_pipeline(sink, "otel-sdk-test")
}

/// A meter provider whose periodic reader exports through otlpflow's
/// metric exporter over `p`.
fn meter_provider(p: &Pipeline) -> opentelemetry_sdk::metrics::SdkMeterProvider {
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(
        otlpflow::opentelemetry::MetricExporter::new(p),
    )
    .build();
    opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .build()
}

/// Every span a receiver got, with its scope's name, version and
/// attributes, sorted by span id.
fn received(sink: &Sink) -> Vec<(String, String, usize, ProtoSpan)> {
    let mut out = Vec::new();
    for req in sink.take_requests() {
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                let scope = ss.scope.unwrap_or_default();
                for s in ss.spans {
                    out.push((
                        scope.name.clone(),
                        scope.version.clone(),
                        scope.attributes.len(),
                        s,
                    ));
                }
            }
        }
    }
    out.sort_by(|a, b| a.3.span_id.cmp(&b.3.span_id));
    out
}

#[test]
fn spans_through_the_sdk_match_what_its_own_exporter_sends() {
    let (ours, theirs) = (sink(), sink());
    let p = pipeline(&ours);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(theirs.endpoint())
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(otlpflow::opentelemetry::SpanProcessor::new(&p))
        .with_span_processor(SimpleSpanProcessor::new(exporter))
        .build();
    let scope = InstrumentationScope::builder("checkout")
        .with_version("1.4.2")
        .with_attributes([KeyValue::new("lib.kind", "http")])
        .build();
    let tracer = provider.tracer_with_scope(scope);
    // A remote parent with a trace state, as a service continuing a trace.
    let remote = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "x1")]).unwrap(),
    );
    let parent_cx = Context::new().with_remote_span_context(remote.clone());
    let mut root = tracer
        .span_builder("GET /items")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("ratio", 0.25),
            KeyValue::new("cached", true),
            KeyValue::new(
                "tags",
                opentelemetry::Value::Array(
                    vec!["a", "b"]
                        .into_iter()
                        .map(Into::into)
                        .collect::<Vec<opentelemetry::StringValue>>()
                        .into(),
                ),
            ),
            KeyValue::new(
                "sizes",
                opentelemetry::Value::Array(vec![1i64, 2, 3].into()),
            ),
        ])
        .start_with_context(&tracer, &parent_cx);
    root.add_event("cache.miss", vec![KeyValue::new("cache.key", 42)]);
    let root_cx = Context::current_with_span(root);
    for i in 0..5i64 {
        let mut child = tracer
            .span_builder(format!("query {i}"))
            .with_kind(SpanKind::Client)
            .with_links(vec![Link::with_context(remote.clone())])
            .with_attributes([KeyValue::new("db.rows", i)])
            .start_with_context(&tracer, &root_cx);
        if i == 3 {
            child.set_status(Status::error("timeout"));
        }
        child.end();
    }
    root_cx.span().set_status(Status::Ok);
    root_cx.span().end();
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
    let s = p.stats();
    assert_eq!(s.exported, 6, "{s:?}");
    s.check_identity().unwrap();
    let (a, b) = (received(&ours), received(&theirs));
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 6);
    for ((sa, va, na, x), (sb, vb, nb, y)) in a.iter().zip(&b) {
        assert_eq!((sa, va, na), (sb, vb, nb), "scope");
        // An absent status and an empty one both mean UNSET: the SDK's
        // exporter always writes the message, otlpflow skips it when empty.
        let (mut x, mut y) = (x.clone(), y.clone());
        for s in [&mut x, &mut y] {
            s.status.get_or_insert_with(Default::default);
        }
        assert_eq!(x, y, "span {} differs from the SDK exporter's", x.name);
    }
    let root = a
        .iter()
        .find(|(_, _, _, s)| s.name == "GET /items")
        .unwrap();
    assert_eq!(root.3.trace_state, "vendor=x1");
    assert_eq!(root.3.parent_span_id, remote.span_id().to_bytes().to_vec());
    drop(rt);
}

#[test]
fn logs_through_the_sdk_arrive_with_their_fields() {
    let ours = sink();
    let p = pipeline(&ours);
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_log_processor(otlpflow::opentelemetry::LogProcessor::new(&p))
        .build();
    let logger = provider.logger("billing");
    for i in 0..10i64 {
        let mut r = logger.create_log_record();
        r.set_severity_number(Severity::Warn);
        r.set_severity_text("WARN");
        r.set_body("invoice late".into());
        r.add_attribute("invoice.id", i);
        r.set_event_name("invoice.late");
        logger.emit(r);
    }
    provider.shutdown().unwrap();
    let mut logs = Vec::new();
    for req in ours.take_log_requests() {
        for rl in req.resource_logs {
            for sl in rl.scope_logs {
                assert_eq!(sl.scope.unwrap_or_default().name, "billing");
                logs.extend(sl.log_records);
            }
        }
    }
    assert_eq!(logs.len(), 10);
    for l in &logs {
        assert_eq!((l.severity_number, l.severity_text.as_str()), (13, "WARN"));
        assert_eq!(l.event_name, "invoice.late");
        assert_eq!(l.attributes[0].key, "invoice.id");
        assert!(l.observed_time_unix_nano > 0);
    }
}

/// Lists and maps in a log record's body and attributes (structured
/// logging through the Logs API) arrive as OTLP arrays and kvlists, as the
/// SDK's own exporter sends them; they went as their Rust `Debug` text
/// (`Map({Static("user"): ...})`). Nesting past 16 levels goes as text.
#[test]
fn structured_log_bodies_and_attributes_arrive_as_kvlists_and_arrays() {
    use opentelemetry::logs::AnyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use std::collections::{BTreeMap, HashMap};
    let ours = sink();
    let p = pipeline(&ours);
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_log_processor(otlpflow::opentelemetry::LogProcessor::new(&p))
        .build();
    let logger = provider.logger("structured");
    let list = |items: Vec<AnyValue>| AnyValue::ListAny(Box::new(items));
    let user = AnyValue::Map(Box::new(HashMap::from([
        ("id".into(), AnyValue::Int(7)),
        ("tier".into(), AnyValue::String("gold".into())),
    ])));
    let mut r = logger.create_log_record();
    r.set_body(AnyValue::Map(Box::new(HashMap::from([
        ("event".into(), AnyValue::String("order placed".into())),
        (
            "items".into(),
            list(vec![AnyValue::Int(1), list(vec![AnyValue::Boolean(true)])]),
        ),
        ("user".into(), user.clone()),
    ]))));
    r.add_attribute("user", user);
    r.add_attribute("ratio", 0.5);
    let mut deep = AnyValue::Int(0);
    for _ in 0..40 {
        deep = list(vec![deep]);
    }
    r.add_attribute("deep", deep);
    logger.emit(r);
    provider.shutdown().unwrap();
    let logs: Vec<_> = ours
        .take_log_requests()
        .into_iter()
        .flat_map(|req| req.resource_logs)
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .collect();
    assert_eq!(logs.len(), 1);
    // Maps by key (the API's maps are hash maps: their order is not kept).
    fn map(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> BTreeMap<String, V> {
        let Some(V::KvlistValue(kvs)) = v.as_ref().and_then(|v| v.value.clone()) else {
            panic!("not a kvlist: {v:?}")
        };
        kvs.values
            .into_iter()
            .map(|kv| (kv.key, kv.value.and_then(|v| v.value).unwrap()))
            .collect()
    }
    fn array(v: &V) -> Vec<V> {
        let V::ArrayValue(a) = v else {
            panic!("not an array: {v:?}")
        };
        a.values.iter().map(|v| v.value.clone().unwrap()).collect()
    }
    let body = map(&logs[0].body);
    assert_eq!(body["event"], V::StringValue("order placed".into()));
    let items = array(&body["items"]);
    assert_eq!(items[0], V::IntValue(1));
    assert_eq!(array(&items[1]), vec![V::BoolValue(true)]);
    let attrs: BTreeMap<_, _> = logs[0]
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone()))
        .collect();
    let nested_user = opentelemetry_proto::tonic::common::v1::AnyValue {
        value: Some(body["user"].clone()),
    };
    for user in [map(&attrs["user"]), map(&Some(nested_user))] {
        assert_eq!(
            user,
            BTreeMap::from([
                ("id".to_owned(), V::IntValue(7)),
                ("tier".to_owned(), V::StringValue("gold".into())),
            ])
        );
    }
    assert_eq!(
        attrs["ratio"].as_ref().unwrap().value,
        Some(V::DoubleValue(0.5))
    );
    let mut deep = attrs["deep"].as_ref().unwrap().value.clone().unwrap();
    for _ in 0..16 {
        deep = array(&deep).remove(0);
    }
    let V::StringValue(text) = deep else {
        panic!("{deep:?}")
    };
    assert!(text.starts_with("ListAny([ListAny(["), "{text}");
}

#[test]
fn sdk_metrics_travel_through_the_pipeline() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value as N};
    let ours = sink();
    let p = pipeline(&ours);
    let provider = meter_provider(&p);
    let meter = provider.meter("shop");
    let orders = meter
        .u64_counter("shop.orders")
        .with_unit("{order}")
        .build();
    let latency = meter
        .f64_histogram("shop.latency")
        .with_unit("ms")
        .with_boundaries(vec![10.0, 100.0])
        .build();
    let stock = meter.i64_gauge("shop.stock").build();
    for i in 0..10u64 {
        orders.add(i, &[KeyValue::new("region", "eu")]);
        latency.record((i * 20) as f64, &[]);
    }
    stock.record(-3, &[KeyValue::new("sku", "A-17")]);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
    let mut seen = std::collections::HashMap::new();
    for req in ours.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                assert_eq!(sm.scope.unwrap_or_default().name, "shop");
                for m in sm.metrics {
                    seen.insert(m.name.clone(), m);
                }
            }
        }
    }
    let Some(Data::Sum(sum)) = &seen["shop.orders"].data else {
        panic!("orders: {:?}", seen["shop.orders"]);
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.data_points[0].value, Some(N::AsInt(45)));
    assert_eq!(seen["shop.orders"].unit, "{order}");
    let Some(Data::Histogram(h)) = &seen["shop.latency"].data else {
        panic!("latency");
    };
    let hp = &h.data_points[0];
    assert_eq!((hp.count, hp.sum), (10, Some(900.0)));
    assert_eq!(hp.explicit_bounds, vec![10.0, 100.0]);
    // 0 | 20, 40, 60, 80, 100 | 120, 140, 160, 180 (bounds are inclusive).
    assert_eq!(hp.bucket_counts, vec![1, 5, 4]);
    let Some(Data::Gauge(g)) = &seen["shop.stock"].data else {
        panic!("stock");
    };
    assert_eq!(g.data_points[0].value, Some(N::AsInt(-3)));
}

/// The SDK's resource is exported when the pipeline was given none, or only
/// the environment's (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, which
/// the SDK's resource reads too, along with its own attributes); a pipeline
/// given a resource by its builder keeps it.
#[test]
fn the_sdks_resource_is_used_when_the_pipeline_has_none() {
    let resource_of = |sink: &Sink| -> Vec<(String, String)> {
        let req = sink.take_requests().pop().expect("a request");
        let r = req.resource_spans[0].resource.clone().unwrap_or_default();
        r.attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    };
    for how in ["nothing", "environment", "builder"] {
        let ours = sink();
        let mut b = Pipeline::builder()
            .endpoint(ours.endpoint())
            .shards(1)
            .workers(1)
            .linger(Duration::from_millis(5));
        if how == "environment" {
            b = b
                .apply_env_from(|k| match k {
                    "OTEL_SERVICE_NAME" => Some("from-env".to_owned()),
                    "OTEL_RESOURCE_ATTRIBUTES" => Some("region=eu".to_owned()),
                    _ => None,
                })
                .unwrap();
        }
        let configured = how == "builder";
        if configured {
            b = b.service_name("from-pipeline");
        }
        let p = b.start().unwrap();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(otlpflow::opentelemetry::SpanProcessor::new(&p))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("from-sdk")
                    .with_attribute(KeyValue::new("deployment.environment", "test"))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("r");
        tracer.start("one").end();
        provider.shutdown().unwrap();
        let attrs = resource_of(&ours);
        let service = attrs
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.as_str());
        if configured {
            assert_eq!(service, Some("from-pipeline"), "{attrs:?}");
            assert!(!attrs.iter().any(|(k, _)| k == "deployment.environment"));
        } else {
            assert_eq!(service, Some("from-sdk"), "{how}: {attrs:?}");
            assert!(!attrs.iter().any(|(k, _)| k == "region"), "{attrs:?}");
            assert!(
                attrs.contains(&("deployment.environment".into(), "test".into())),
                "{attrs:?}"
            );
        }
    }
}

#[test]
fn tracers_named_per_request_share_the_overflow_scope_past_the_bound() {
    // A tracer per request name: every SDK scope was held by the pipeline
    // and the bridge's cache for the life of the process. Past
    // `max_scopes` the spans arrive under `otlpflow.overflow`, counted.
    let ours = sink();
    let p = Pipeline::builder()
        .endpoint(ours.endpoint())
        .shards(1)
        .workers(1)
        .linger(Duration::from_millis(5))
        .max_scopes(3)
        .start()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(otlpflow::opentelemetry::SpanProcessor::new(&p))
        .build();
    for i in 0..10 {
        provider
            .tracer(format!("request-{i}"))
            .start("handle")
            .end();
    }
    // The processor's shutdown shuts the pipeline down.
    provider.shutdown().unwrap();
    let s = p.stats();
    assert_eq!((s.exported, s.scopes_overflowed), (10, 7));
    let mut scopes: Vec<String> = received(&ours).into_iter().map(|r| r.0).collect();
    scopes.sort();
    let mut want = vec!["otlpflow.overflow".to_owned(); 7];
    want.extend((0..3).map(|i| format!("request-{i}")));
    assert_eq!(scopes, want);
}

/// The metric exporter asks the SDK for the pipeline's temporality, which
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` sets when the
/// pipeline is built from the environment: delta counters and histograms,
/// cumulative up-down counters, as the OTLP exporters do.
#[test]
fn the_metric_exporter_asks_for_the_pipelines_temporality() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    for (preference, delta) in [("delta", true), ("cumulative", false)] {
        let ours = sink();
        let p = Pipeline::builder()
            .apply_env_from(|k| {
                (k == "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
                    .then(|| preference.to_owned())
            })
            .unwrap()
            .endpoint(ours.endpoint())
            .shards(1)
            .workers(1)
            .linger(Duration::from_millis(5))
            .start()
            .unwrap();
        let provider = meter_provider(&p);
        let meter = provider.meter("temporality");
        meter.u64_counter("requests").build().add(3, &[]);
        meter.i64_up_down_counter("queue").build().add(-2, &[]);
        meter.f64_histogram("latency").build().record(12.5, &[]);
        // The exporter's shutdown flushes and shuts the pipeline down.
        provider.shutdown().unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for req in ours.take_metric_requests() {
            for rm in req.resource_metrics {
                for sm in rm.scope_metrics {
                    for m in sm.metrics {
                        let t = match m.data {
                            Some(Data::Sum(s)) => s.aggregation_temporality,
                            Some(Data::Histogram(h)) => h.aggregation_temporality,
                            other => panic!("{other:?}"),
                        };
                        seen.insert(m.name, t);
                    }
                }
            }
        }
        let (d, c) = (1, 2);
        let want = if delta { [d, c, d] } else { [c, c, c] };
        let want: std::collections::BTreeMap<String, i32> = ["requests", "queue", "latency"]
            .iter()
            .map(|n| n.to_string())
            .zip(want)
            .collect();
        assert_eq!(seen, want, "{preference}");
    }
}
