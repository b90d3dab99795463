//! What a delivery receipt costs the recording thread in allocations: one
//! receipt for a batch of 1,000 spans allocates at most twice (the receipt,
//! and its table's slot when the table grows), not per span; plain
//! `record_span` allocates nothing.

use std::time::Duration;

use otlpflow::sink::{Sink, SinkOptions};
use otlpflow::{KeyValue, Pipeline, Span, Value};

mod support;
use support::allocs;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

#[test]
fn a_receipt_allocates_per_batch_not_per_span() {
    let sink = Sink::start(SinkOptions::default()).unwrap();
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .start()
        .unwrap();
    let scope = p.scope("allocations", "1");
    let attrs = [KeyValue::new("k", Value::I64(1))];
    let spans: Vec<Span<'_>> = (0..1000u64)
        .map(|i| Span {
            trace_id: otlpflow::workload::trace_id(9, i),
            span_id: (i + 1).to_le_bytes(),
            name: "acked",
            attributes: &attrs,
            ..Default::default()
        })
        .collect();
    // Warm up: the thread's shard, the receipt table.
    let warm = p.record_batch_acked(&scope, &spans[..1]);
    assert!(warm.wait(Duration::from_secs(10)).unwrap().all_delivered());
    p.record_span(&scope, &spans[0]).unwrap();

    let before = allocs();
    for s in &spans {
        p.record_span(&scope, s).unwrap();
    }
    let plain = allocs() - before;

    let before = allocs();
    let receipt = p.record_batch_acked(&scope, &spans);
    let acked = allocs() - before;

    assert_eq!(plain, 0, "record_span allocated");
    assert!(
        acked <= 2,
        "a receipt of 1000 spans allocated {acked} times"
    );
    let d = receipt.wait(Duration::from_secs(10)).unwrap();
    assert_eq!((d.records, d.delivered), (1000, 1000));
    p.shutdown(Duration::from_secs(10)).unwrap();
}
