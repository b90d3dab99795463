//! The `tracing` layer's cost in allocations: a span with typed fields, a
//! string field, a `Debug` field and an event, recorded and closed, costs
//! no allocation beyond the registry's slot for the layer's state (one box
//! per span); and its bounds: events and text past them are counted as
//! dropped, never grown.

use std::time::Duration;

use tracing_subscriber::prelude::*;

mod support;
use support::allocs;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

#[test]
fn a_span_costs_no_allocation_beyond_its_registry_slot_and_keeps_its_bounds() {
    let sink = support::keeping_sink();
    let p = support::prompt_pipeline(&sink, "allocations");
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(otlpflow::tracing::layer(&p)));
    let per_span = tracing::dispatcher::with_default(&dispatch, || {
        let one = |i: u64| {
            let span = tracing::info_span!(
                "GET /items",
                otel.kind = "server",
                http.response.status_code = 200u64,
                url.path = "/api/v1/items/42",
                item = ?(i, "debug"),
                ratio = 0.5,
            );
            let _in = span.enter();
            tracing::info!(cache.key = i % 4096, "cache miss");
        };
        // Warm up: the scope table, the registry's slab, the callsites.
        for i in 0..200 {
            one(i);
        }
        let before = allocs();
        for i in 0..1000 {
            one(i);
        }
        (allocs() - before) as f64 / 1000.0
    });
    assert!(per_span <= 1.05, "{per_span} allocations per span");
    // Bounds: 10 events keep 8 (2 dropped); a 2 KB string is dropped.
    tracing::dispatcher::with_default(&dispatch, || {
        let big = "x".repeat(2048);
        let span = tracing::info_span!("bounded", big = big.as_str(), small = "kept");
        let _in = span.enter();
        for i in 0..10 {
            tracing::info!(i, "step");
        }
    });
    p.shutdown(Duration::from_secs(10)).unwrap();
    let spans: Vec<_> = sink
        .take_requests()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect();
    assert_eq!(spans.len(), 1201);
    let bounded = spans.iter().find(|s| s.name == "bounded").unwrap();
    assert_eq!((bounded.events.len(), bounded.dropped_events_count), (8, 2));
    assert_eq!(bounded.dropped_attributes_count, 1);
    assert_eq!(bounded.attributes.len(), 1);
    let typical = spans.iter().find(|s| s.name == "GET /items").unwrap();
    assert_eq!(typical.attributes.len(), 4, "{typical:?}");
    assert_eq!(typical.events.len(), 1);
    eprintln!("allocations per span on the recording thread: {per_span}");
}
