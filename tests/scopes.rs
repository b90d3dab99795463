//! The pipeline's table of instrumentation scopes is bounded: a host that
//! names a scope per tenant or per request gets the first `max_scopes`, and
//! records under later ones arrive under the shared `otlpflow.overflow`
//! scope, counted; none is lost.

mod support;
use support::keeping_sink;

use std::collections::HashMap;
use std::time::Duration;

use otlpflow::sink::Sink;
use otlpflow::{Pipeline, Policy, Span};

fn builder(endpoint: &str) -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .endpoint(endpoint)
        .shards(1)
        .workers(1)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
}

fn span(n: u64) -> Span<'static> {
    let mut trace_id = [1; 16];
    trace_id[..8].copy_from_slice(&(n + 1).to_le_bytes());
    Span {
        name: "op",
        trace_id,
        span_id: (n + 1).to_le_bytes(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..Default::default()
    }
}

/// Spans received, by scope name.
fn spans_by_scope(sink: &Sink) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for req in sink.take_requests() {
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                let name = ss.scope.map(|s| s.name).unwrap_or_default();
                *by.entry(name).or_default() += ss.spans.len();
            }
        }
    }
    by
}

#[test]
fn scopes_past_the_bound_are_recorded_under_the_overflow_scope() {
    // The default bound, 4096: a million scopes used to hold 300 MB for
    // the pipeline's life (each worker's cache and each batch's index are
    // sized by the highest scope id).
    let sink = keeping_sink();
    let p = builder(&sink.endpoint()).start().unwrap();
    let first = p.scope("tenant-0", "1");
    for i in 0..4_100u64 {
        let scope = p.scope(&format!("tenant-{i}"), "1");
        p.record_span(&scope, &span(i)).unwrap();
    }
    // A scope registered under the bound keeps its own id after it.
    assert_eq!(p.scope("tenant-0", "1"), first);
    p.record_span(&first, &span(5_000)).unwrap();
    let error = p.last_error().unwrap_or_default();
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!((s.exported, s.failed.total()), (4_101, 0));
    assert_eq!(s.scopes_overflowed, 4);
    assert!(error.contains("max_scopes (4096)"), "{error}");
    let by = spans_by_scope(&sink);
    assert_eq!(by.len(), 4_097, "4096 scopes and the overflow scope");
    assert_eq!(by.get("otlpflow.overflow"), Some(&4));
    assert_eq!(by.get("tenant-0"), Some(&2));
    assert_eq!(by.get("tenant-4095"), Some(&1));
    assert_eq!(by.get("tenant-4096"), None);
}

#[test]
fn the_bound_is_a_setting_and_an_overflow_scope_registered_first_is_reused() {
    let sink = keeping_sink();
    let p = builder(&sink.endpoint())
        .prometheus("127.0.0.1:0".parse().unwrap())
        .set("max_scopes", "2")
        .unwrap()
        .start()
        .unwrap();
    // The bridges register the overflow scope themselves, under the bound.
    let overflow = p.scope("otlpflow.overflow", otlpflow::VERSION);
    let a = p.scope("a", "");
    let (b, c) = (p.scope("b", ""), p.scope("c", ""));
    assert_eq!((b, c), (overflow, overflow));
    assert_ne!(a, overflow);
    for (n, scope) in [a, b, c].iter().enumerate() {
        p.record_span(scope, &span(n as u64)).unwrap();
    }
    let text = support::scrape(p.prometheus_addr().unwrap());
    assert!(
        text.contains("\notlpflow_scopes_overflowed_total 2\n"),
        "{text}"
    );
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!((s.exported, s.scopes_overflowed), (3, 2));
    let by = spans_by_scope(&sink);
    assert_eq!(
        by,
        HashMap::from([("a".into(), 1), ("otlpflow.overflow".into(), 2)])
    );

    for bad in ["0", "1048577", "many"] {
        let e = Pipeline::builder()
            .set("max_scopes", bad)
            .and_then(|b| b.start());
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("max_scopes"), "{bad}: {e}");
    }
}

#[test]
fn otlpflows_own_metrics_keep_their_scope_when_the_hosts_fill_the_table() {
    // The self-metrics scope is registered at the first collection, which
    // comes after the host's scopes have filled the table: it must not be
    // the overflow scope, nor count as an overflow.
    let sink = keeping_sink();
    let p = builder(&sink.endpoint())
        .self_metrics(true)
        .set("max_scopes", "2")
        .unwrap()
        .start()
        .unwrap();
    for (n, name) in ["a", "b", "c"].iter().enumerate() {
        p.record_span(&p.scope(name, ""), &span(n as u64)).unwrap();
    }
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(s.scopes_overflowed, 1, "only the host's third scope");
    let mut metric_scopes = std::collections::HashSet::new();
    for req in sink.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                metric_scopes.insert(sm.scope.map(|s| s.name).unwrap_or_default());
            }
        }
    }
    assert_eq!(
        metric_scopes,
        std::collections::HashSet::from(["otlpflow".to_owned()])
    );
}
