//! The `tracing` layer and the `log` bridge through the real pipeline to
//! the embedded receiver, decoded field by field: a tree of spans over
//! threads and async tasks arrives as one trace with the right links,
//! typed attributes, events, status and durations; events outside spans
//! and `log` records arrive as log records with severities and trace
//! context; a remote parent from a `traceparent` is continued.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use otlpflow::sink::Sink;
use otlpflow::traceparent::TraceContext;
use otlpflow::Pipeline;
use tracing::Instrument;

mod support;
use tracing_subscriber::prelude::*;

fn start() -> (Sink, Pipeline) {
    let sink = support::keeping_sink();
    let p = support::prompt_pipeline(&sink, "bridges");
    (sink, p)
}

fn spans_by_name(sink: &Sink) -> HashMap<String, Vec<ProtoSpan>> {
    let mut by_name: HashMap<String, Vec<ProtoSpan>> = HashMap::new();
    for req in sink.take_requests() {
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    by_name.entry(s.name.clone()).or_default().push(s);
                }
            }
        }
    }
    by_name
}

fn attr<'a>(s: &'a ProtoSpan, key: &str) -> Option<&'a Any> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

#[test]
fn a_tree_of_tracing_spans_over_threads_and_tasks_arrives_as_one_trace() {
    let (sink, p) = start();
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(otlpflow::tracing::layer(&p)));
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!(
            "handle request",
            otel.kind = "server",
            http.response.status_code = 200u64,
            ratio = 0.5,
            cached = true,
            user = tracing::field::Empty,
        );
        let _in = root.enter();
        root.record("user", "ada");
        tracing::info!(cache.key = 42, "cache miss");
        // Children on other threads, each with the parent given explicitly.
        std::thread::scope(|s| {
            for t in 0..3i64 {
                let dispatch = dispatch.clone();
                let parent = root.clone();
                s.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let child = tracing::info_span!(parent: &parent, "worker", thread = t);
                        let _c = child.enter();
                        let leaf = tracing::debug_span!("leaf", otel.status_code = "error");
                        let _l = leaf.enter();
                        std::thread::sleep(Duration::from_millis(2));
                    });
                });
            }
        });
        // Async tasks entering spans across awaits.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..4i64)
                .map(|i| {
                    tokio::spawn(
                        async move {
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            tracing::warn!(step = i, "halfway");
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        .instrument(tracing::info_span!("task", i)),
                    )
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    s.check_identity().unwrap();
    let spans = spans_by_name(&sink);
    let root = &spans["handle request"][0];
    assert_eq!(spans["handle request"].len(), 1);
    assert_eq!(root.kind, 2, "server");
    assert!(root.parent_span_id.is_empty(), "a root");
    assert!(matches!(
        attr(root, "http.response.status_code"),
        Some(Any::IntValue(200))
    ));
    assert!(matches!(attr(root, "ratio"), Some(Any::DoubleValue(v)) if *v == 0.5));
    assert!(matches!(attr(root, "cached"), Some(Any::BoolValue(true))));
    assert!(matches!(attr(root, "user"), Some(Any::StringValue(u)) if u == "ada"));
    assert_eq!(root.events.len(), 1);
    assert_eq!(root.events[0].name, "cache miss");
    assert!(root.end_time_unix_nano > root.start_time_unix_nano);
    let workers = &spans["worker"];
    assert_eq!(workers.len(), 3);
    for w in workers {
        assert_eq!(w.trace_id, root.trace_id);
        assert_eq!(w.parent_span_id, root.span_id);
    }
    let leaves = &spans["leaf"];
    assert_eq!(leaves.len(), 3);
    for l in leaves {
        let parent = workers
            .iter()
            .find(|w| w.span_id == l.parent_span_id)
            .expect("a worker parent");
        assert_eq!(l.trace_id, parent.trace_id);
        assert_eq!(l.status.as_ref().unwrap().code, 2, "error");
        assert!(l.end_time_unix_nano - l.start_time_unix_nano >= 2_000_000);
    }
    let tasks = &spans["task"];
    assert_eq!(tasks.len(), 4);
    for t in tasks {
        assert_eq!(t.trace_id, root.trace_id, "entered inside the root");
        assert_eq!(t.parent_span_id, root.span_id);
        assert_eq!(t.events.len(), 1);
        assert_eq!(t.events[0].name, "halfway");
    }
    let ids: std::collections::HashSet<_> = spans
        .values()
        .flatten()
        .map(|s| s.span_id.clone())
        .collect();
    assert_eq!(ids.len(), 1 + 3 + 3 + 4, "every span once, ids distinct");
}

#[test]
fn events_outside_spans_and_log_records_arrive_as_log_records() {
    let (sink, p) = start();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(otlpflow::tracing::layer(&p).events_as_logs(true)),
    );
    let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut header = None;
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::error!(order = 7, "payment failed");
        let span = tracing::info_span!("continue", traceparent = remote);
        let _in = span.enter();
        tracing::info!("inside");
        header = otlpflow::tracing::current_context().map(|c| c.to_header());
    });
    // The log bridge (one logger per process: installed here only).
    otlpflow::log::init(&p, log::LevelFilter::Info).unwrap();
    log::warn!(target: "shop", "stock low for {}", "A-17");
    // Key-values become attributes (they were left out).
    let note = "n".repeat(3000);
    log::info!(target: "shop", sku = "B-2", qty = 3, ratio = 0.5, urgent = true,
        big = u64::MAX, at:? = (1, 2), note = note.as_str(); "restocked");
    log::debug!("below the level: not recorded");
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    s.check_identity().unwrap();
    // The continued span: the remote trace and parent.
    let spans = spans_by_name(&sink);
    let cont = &spans["continue"][0];
    let ctx = TraceContext::parse(remote).unwrap();
    assert_eq!(cont.trace_id, ctx.trace_id);
    assert_eq!(cont.parent_span_id, ctx.span_id);
    let out = TraceContext::parse(&header.expect("a current context")).unwrap();
    assert_eq!(
        (out.trace_id.to_vec(), out.span_id.to_vec()),
        (cont.trace_id.clone(), cont.span_id.clone())
    );
    let mut logs = Vec::new();
    for req in sink.take_log_requests() {
        for rl in req.resource_logs {
            for sl in rl.scope_logs {
                let scope = sl.scope.map(|s| s.name).unwrap_or_default();
                for l in sl.log_records {
                    logs.push((scope.clone(), l));
                }
            }
        }
    }
    assert_eq!(logs.len(), 4, "{logs:?}");
    let find = |body: &str| {
        logs.iter()
            .find(|(_, l)| {
                matches!(l.body.as_ref().and_then(|b| b.value.as_ref()), Some(Any::StringValue(s)) if s == body)
            })
            .unwrap_or_else(|| panic!("no log {body:?}"))
    };
    let (_, failed) = find("payment failed");
    assert_eq!(failed.severity_number, 17);
    assert!(failed.trace_id.is_empty() || failed.trace_id == vec![0; 16]);
    let (_, inside) = find("inside");
    assert_eq!(inside.severity_number, 9);
    assert_eq!(inside.trace_id, ctx.trace_id, "the span's trace context");
    assert_eq!(inside.span_id, cont.span_id);
    let (scope, stock) = find("stock low for A-17");
    assert_eq!((scope.as_str(), stock.severity_number), ("shop", 13));
    // Where it was logged, under the semantic conventions' stable names
    // (v1.33; `code.filepath` and `code.lineno` are deprecated), as the
    // Python bindings name it too.
    let code = |l: &opentelemetry_proto::tonic::logs::v1::LogRecord, key: &str| {
        l.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
    };
    for l in [failed, stock] {
        let Some(Any::StringValue(file)) = code(l, "code.file.path") else {
            panic!("no code.file.path: {l:?}")
        };
        assert!(file.ends_with("bridges.rs"), "{file}");
        assert!(matches!(code(l, "code.line.number"), Some(Any::IntValue(n)) if n > 150));
        for old in ["code.filepath", "code.lineno"] {
            assert_eq!(code(l, old), None, "{old}");
        }
    }
    assert_eq!(
        code(stock, "code.namespace"),
        Some(Any::StringValue("bridges".into())),
        "the log record's module path"
    );
    let (_, restocked) = find("restocked");
    let attr = |key: &str| {
        restocked
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
            .unwrap_or_else(|| panic!("no attribute {key}: {restocked:?}"))
    };
    assert_eq!(attr("sku"), Any::StringValue("B-2".into()));
    assert_eq!(attr("qty"), Any::IntValue(3));
    assert_eq!(attr("ratio"), Any::DoubleValue(0.5));
    assert_eq!(attr("urgent"), Any::BoolValue(true));
    assert_eq!(attr("big"), Any::DoubleValue(u64::MAX as f64));
    assert_eq!(attr("at"), Any::StringValue("(1, 2)".into()));
    assert_eq!(
        attr("note"),
        Any::StringValue("n".repeat(1024)),
        "cut at 1 KiB"
    );
}

/// Installed as the global subscriber, the layer also sees what otlpflow's
/// own threads record through `tracing` (h2 logs its frames): none of it is
/// exported, so exporting never feeds itself. Only the test's own spans
/// arrive, and the pipeline offered exactly those.
#[test]
fn the_layer_ignores_what_otlpflows_own_threads_record() {
    let (sink, p) = start();
    // This test alone sets the global default (the others set theirs per
    // thread, which wins over it).
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(otlpflow::tracing::layer(&p)),
    );
    for i in 0..200 {
        let span = tracing::info_span!("app work", i);
        let _in = span.enter();
        tracing::trace!("detail");
    }
    p.flush(Duration::from_secs(10)).unwrap();
    // Let the exporter's connections idle and log a little more.
    std::thread::sleep(Duration::from_millis(50));
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((s.offered, s.exported), (200, 200), "{s:?}");
    assert_eq!(sink.counts().spans, 200);
    assert_eq!(sink.counts().logs, 0);
}

/// Asked to, the layer puts each span's code location on it, as
/// tracing-opentelemetry does by default: `code.file.path`,
/// `code.line.number` and the module as `code.namespace` (the names the
/// log bridge uses). Off by default, where a span carries only its fields.
#[test]
fn spans_carry_their_code_location_when_asked() {
    for located in [true, false] {
        let (sink, p) = start();
        let layer = otlpflow::tracing::layer(&p).with_code_location(located);
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let line = line!() + 2;
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("located", order = 7);
            let _in = span.enter();
        });
        p.shutdown(Duration::from_secs(10)).unwrap();
        let spans = spans_by_name(&sink);
        let span = &spans["located"][0];
        let attr = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.as_ref()?.value.clone())
        };
        assert_eq!(attr("order"), Some(Any::IntValue(7)));
        if located {
            assert_eq!(
                attr("code.file.path"),
                Some(Any::StringValue(file!().into()))
            );
            assert_eq!(attr("code.line.number"), Some(Any::IntValue(line as i64)));
            assert_eq!(
                attr("code.namespace"),
                Some(Any::StringValue(module_path!().into()))
            );
        } else {
            assert_eq!(span.attributes.len(), 1, "{:?}", span.attributes);
        }
    }
}
