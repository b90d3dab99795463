//! One system under comparison, in its own process so that its CPU time and
//! peak RSS are its own (the driver, `benches/compare.py`, reads them with
//! wait4):
//!
//! ```text
//! otlpflow-compare SYSTEM SHAPE ENDPOINT SPANS [RATE]
//!   SYSTEM  otlpflow | otlpflow-linger10 | otel-tuned | otel-default | baseline (the producer
//!           loop and pacing alone: what the harness itself costs)
//!           otel-otlpflow (the OpenTelemetry API with otlpflow's SpanProcessor)
//!           tracing-otlpflow (`tracing` with otlpflow's layer)
//!           tracing-otel-tuned | tracing-otel-default (`tracing` with tracing-opentelemetry
//!           over opentelemetry-rust's BatchSpanProcessor and OTLP/gRPC exporter)
//!   SHAPE   bench (5 attributes, 1 event, status, parent)
//!           attr10 (10 attributes of 20-character strings)
//!   RATE    spans per second in total (paced); omitted: as fast as taken
//! ```
//!
//! Two producer threads record SPANS spans in total; then the system shuts
//! down (flushing). Prints `RESULT offered elapsed_s record_s`.

use std::sync::Arc;
use std::time::{Duration, Instant};

const THREADS: u64 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Bench,
    Attr10,
}

/// The ten 20-character attribute values of the `attr10` shape.
const VALUES: [&str; 10] = [
    "aaaaaaaaaaaaaaaaaaaa",
    "bbbbbbbbbbbbbbbbbbbb",
    "cccccccccccccccccccc",
    "dddddddddddddddddddd",
    "eeeeeeeeeeeeeeeeeeee",
    "ffffffffffffffffffff",
    "gggggggggggggggggggg",
    "hhhhhhhhhhhhhhhhhhhh",
    "iiiiiiiiiiiiiiiiiiii",
    "jjjjjjjjjjjjjjjjjjjj",
];
const KEYS: [&str; 10] = [
    "attribute.key.0",
    "attribute.key.1",
    "attribute.key.2",
    "attribute.key.3",
    "attribute.key.4",
    "attribute.key.5",
    "attribute.key.6",
    "attribute.key.7",
    "attribute.key.8",
    "attribute.key.9",
];

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs `per_thread` iterations of `f(thread, i)` on each producer thread,
/// paced to `rate` spans per second in total if given.
fn produce(per_thread: u64, rate: Option<f64>, f: impl Fn(u64, u64) + Sync) -> Duration {
    let t0 = Instant::now();
    let interval = rate.map(|r| Duration::from_secs_f64(THREADS as f64 / r));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || {
                let start = Instant::now();
                for i in 0..per_thread {
                    if let Some(iv) = interval {
                        // Sleep only when more than a millisecond ahead: a
                        // sleep per span would cost more CPU (a syscall and
                        // two context switches) than the systems measured.
                        let due = start + iv.mul_f64(i as f64);
                        let now = Instant::now();
                        if due > now + Duration::from_millis(1) {
                            std::thread::sleep(due - now);
                        }
                    }
                    f(t, i);
                }
            });
        }
    });
    t0.elapsed()
}

/// The Tokio runtime tonic needs around opentelemetry-otlp's exporter.
fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

/// An otlpflow pipeline as every otlpflow system here uses it: Block (no
/// loss), the given linger.
fn otlpflow_pipeline(endpoint: &str, linger: Duration) -> otlpflow::Pipeline {
    otlpflow::Pipeline::builder()
        .endpoint(endpoint)
        .linger(linger)
        .service_name("bench")
        .policy(otlpflow::Policy::Block {
            max_wait: Duration::from_secs(60),
        })
        .start()
        .expect("otlpflow starts")
}

fn run_otlpflow(
    shape: Shape,
    endpoint: &str,
    per_thread: u64,
    rate: Option<f64>,
    linger: Duration,
) -> Duration {
    use otlpflow::{workload, KeyValue, Span, SpanKind, Value};
    let p = otlpflow_pipeline(endpoint, linger);
    let scope = p.scope("bench", "1");
    let record = produce(per_thread, rate, |t, i| {
        let now = now_ns();
        match shape {
            Shape::Bench => {
                let _ = workload::record_benchmark_span(&p, &scope, t + 1, i, now);
            }
            Shape::Attr10 => {
                let attrs: [KeyValue<'_>; 10] =
                    std::array::from_fn(|k| KeyValue::new(KEYS[k], Value::Str(VALUES[k])));
                let span = Span {
                    trace_id: workload::trace_id(t + 1, i),
                    span_id: (workload::splitmix(t ^ i) | 1).to_le_bytes(),
                    name: "benchmark-span",
                    kind: SpanKind::Internal,
                    start_time_unix_nano: now - 1000,
                    end_time_unix_nano: now,
                    attributes: &attrs,
                    ..Default::default()
                };
                let _ = p.record_span(&scope, &span);
            }
        }
    });
    let s = p.shutdown(Duration::from_secs(60)).expect("shutdown");
    eprintln!(
        "otlpflow: offered {} exported {} dropped {} failed {}",
        s.offered,
        s.exported,
        s.dropped.total(),
        s.failed.total()
    );
    record
}

/// What processes the OpenTelemetry SDK's spans.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Processor {
    /// BatchSpanProcessor tuned (65,536 queue, 8,192 batch, 100 ms) + OTLP/gRPC.
    Tuned,
    /// BatchSpanProcessor with its defaults + OTLP/gRPC.
    Default,
    /// otlpflow's SpanProcessor (through an otlpflow pipeline).
    Otlpflow,
}

/// An OpenTelemetry SDK provider exporting to `endpoint` through
/// `processor`, and the otlpflow pipeline when there is one.
fn provider(
    endpoint: &str,
    processor: Processor,
) -> (
    opentelemetry_sdk::trace::SdkTracerProvider,
    Option<otlpflow::Pipeline>,
) {
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
    let builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name("bench")
            .build(),
    );
    if processor == Processor::Otlpflow {
        let p = otlpflow_pipeline(endpoint, Duration::from_millis(100));
        let provider = builder
            .with_span_processor(otlpflow::opentelemetry::SpanProcessor::new(&p))
            .build();
        return (provider, Some(p));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("exporter");
    let config = if processor == Processor::Tuned {
        BatchConfigBuilder::default()
            .with_max_queue_size(65_536)
            .with_max_export_batch_size(8_192)
            .with_scheduled_delay(Duration::from_millis(100))
            .build()
    } else {
        BatchConfigBuilder::default().build()
    };
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build();
    (builder.with_span_processor(batch).build(), None)
}

fn report_pipeline(p: &Option<otlpflow::Pipeline>) {
    if let Some(p) = p {
        let s = p.stats();
        eprintln!(
            "otlpflow: offered {} exported {} dropped {:?} failed {} by signal {:?}",
            s.offered,
            s.exported,
            s.dropped,
            s.failed.total(),
            s.offered_by_signal
        );
    }
}

/// The filter a service would set on both: its own spans and events, not
/// those of the HTTP/2 and gRPC libraries its exporter runs on.
fn app_only() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|m| {
        !["h2", "hyper", "tonic", "tower", "opentelemetry"]
            .iter()
            .any(|t| m.target().starts_with(t))
    })
}

/// The same spans through `tracing`, with otlpflow's layer or with
/// tracing-opentelemetry over the OpenTelemetry SDK.
fn run_tracing(
    shape: Shape,
    endpoint: &str,
    per_thread: u64,
    rate: Option<f64>,
    processor: Processor,
) -> Duration {
    use tracing_subscriber::prelude::*;
    let runtime = tokio_runtime();
    let _guard = runtime.enter();
    let (sdk, pipeline) = match processor {
        Processor::Otlpflow => {
            let p = otlpflow_pipeline(endpoint, Duration::from_millis(100));
            let layer = otlpflow::tracing::layer(&p).with_filter(app_only());
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("subscriber");
            (None, Some(p))
        }
        _ => {
            use opentelemetry::trace::TracerProvider as _;
            let (provider, _) = provider(endpoint, processor);
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("bench"))
                .with_filter(app_only());
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("subscriber");
            (Some(provider), None)
        }
    };
    let record = produce(per_thread, rate, |_, i| match shape {
        Shape::Bench => {
            let span = tracing::info_span!(
                "GET /api/v1/items/{id}",
                otel.kind = "server",
                http.request.method = "GET",
                url.path = "/api/v1/items/42",
                server.address = "api.example.internal",
                http.response.status_code = 200i64,
                app.item_id = i as i64,
                otel.status_code = "ok",
            );
            let _in = span.enter();
            tracing::info!(cache.key = (i % 4096) as i64, "cache.miss");
        }
        Shape::Attr10 => {
            let span = tracing::info_span!(
                "benchmark-span",
                "attribute.key.0" = VALUES[0],
                "attribute.key.1" = VALUES[1],
                "attribute.key.2" = VALUES[2],
                "attribute.key.3" = VALUES[3],
                "attribute.key.4" = VALUES[4],
                "attribute.key.5" = VALUES[5],
                "attribute.key.6" = VALUES[6],
                "attribute.key.7" = VALUES[7],
                "attribute.key.8" = VALUES[8],
                "attribute.key.9" = VALUES[9],
            );
            let _in = span.enter();
        }
    });
    if let Some(p) = &pipeline {
        let _ = p.shutdown(Duration::from_secs(60));
    }
    report_pipeline(&pipeline);
    if let Some(sdk) = sdk {
        if let Err(e) = sdk.shutdown() {
            eprintln!("otel shutdown: {e}");
        }
    }
    record
}

fn run_otel(
    shape: Shape,
    endpoint: &str,
    per_thread: u64,
    rate: Option<f64>,
    processor: Processor,
) -> Duration {
    use opentelemetry::trace::{
        SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer,
        TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    // tonic needs a Tokio runtime around the exporter.
    let runtime = tokio_runtime();
    let _guard = runtime.enter();
    let (provider, pipeline) = provider(endpoint, processor);
    let tracer = Arc::new(provider.tracer("bench"));
    let parent = Context::new().with_remote_span_context(SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes([7; 16]),
        opentelemetry::trace::SpanId::from_bytes([9; 8]),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    let record = produce(per_thread, rate, |_, i| match shape {
        Shape::Bench => {
            let mut span = tracer
                .span_builder("GET /api/v1/items/{id}")
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("url.path", "/api/v1/items/42"),
                    KeyValue::new("server.address", "api.example.internal"),
                    KeyValue::new("http.response.status_code", 200),
                    KeyValue::new("app.item_id", i as i64),
                ])
                .start_with_context(tracer.as_ref(), &parent);
            use opentelemetry::trace::Span as _;
            span.add_event(
                "cache.miss",
                vec![KeyValue::new("cache.key", (i % 4096) as i64)],
            );
            span.set_status(Status::Ok);
            span.end();
        }
        Shape::Attr10 => {
            let attrs: Vec<KeyValue> = (0..10).map(|k| KeyValue::new(KEYS[k], VALUES[k])).collect();
            let mut span = tracer
                .span_builder("benchmark-span")
                .with_attributes(attrs)
                .start(tracer.as_ref());
            use opentelemetry::trace::Span as _;
            span.end();
        }
    });
    if let Err(e) = provider.shutdown() {
        eprintln!("otel shutdown: {e}");
    }
    report_pipeline(&pipeline);
    record
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: {} SYSTEM SHAPE ENDPOINT SPANS [RATE]", args[0]);
        std::process::exit(2);
    }
    let shape = match args[2].as_str() {
        "bench" => Shape::Bench,
        "attr10" => Shape::Attr10,
        other => panic!("unknown shape {other}"),
    };
    let endpoint = &args[3];
    let spans: u64 = args[4].parse().expect("SPANS");
    let rate: Option<f64> = args.get(5).map(|r| r.parse().expect("RATE"));
    let per_thread = spans / THREADS;
    let t0 = Instant::now();
    let record = match args[1].as_str() {
        // The default linger (100 ms, the tuned BatchSpanProcessor's delay).
        "otlpflow" => run_otlpflow(
            shape,
            endpoint,
            per_thread,
            rate,
            Duration::from_millis(100),
        ),
        // The old 10 ms default, for the fixed-rate figure: ten times the
        // requests at a trickle.
        "otlpflow-linger10" => {
            run_otlpflow(shape, endpoint, per_thread, rate, Duration::from_millis(10))
        }
        "otel-tuned" => run_otel(shape, endpoint, per_thread, rate, Processor::Tuned),
        "otel-default" => run_otel(shape, endpoint, per_thread, rate, Processor::Default),
        "otel-otlpflow" => run_otel(shape, endpoint, per_thread, rate, Processor::Otlpflow),
        "tracing-otlpflow" => run_tracing(shape, endpoint, per_thread, rate, Processor::Otlpflow),
        "tracing-otel-tuned" => run_tracing(shape, endpoint, per_thread, rate, Processor::Tuned),
        "tracing-otel-default" => {
            run_tracing(shape, endpoint, per_thread, rate, Processor::Default)
        }
        "baseline" => produce(per_thread, rate, |t, i| {
            std::hint::black_box((t, i, now_ns()));
        }),
        other => panic!("unknown system {other}"),
    };
    println!(
        "RESULT {} {} {}",
        per_thread * THREADS,
        t0.elapsed().as_secs_f64(),
        record.as_secs_f64()
    );
}
