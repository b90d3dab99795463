//! Batching and request concurrency as the defaults set them: a batch full
//! by bytes leaves at once, batches and requests in flight grow over a
//! long round trip when nothing is set, and an explicit setting is kept.
//! Real loopback sockets to the embedded receiver; loads bounded in count.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, Pipeline, Policy};

fn sink(latency: Duration) -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        latency,
        ..SinkOptions::default()
    })
    .expect("sink starts")
}

fn record(p: &Pipeline, n: u64) {
    let scope = p.scope("batching", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, 1, i, 1_700_000_000_000_000_000).unwrap();
    }
}

/// The most spans one request the receiver kept carried.
fn biggest_request(sink: &Sink) -> usize {
    let spans = |r: &ExportTraceServiceRequest| -> usize {
        r.resource_spans[0]
            .scope_spans
            .iter()
            .map(|s| s.spans.len())
            .sum()
    };
    sink.take_requests().iter().map(spans).max().unwrap()
}

/// A batch whose next record would pass the byte limit is full: it used to
/// wait for `linger` (here a minute) because its bytes stayed just under
/// the limit, 35k spans/s where 2M were possible.
#[test]
fn a_batch_full_by_bytes_leaves_without_waiting_for_linger() {
    let sink = sink(Duration::ZERO);
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .workers(1)
        .shards(1)
        .max_batch_items(100_000)
        .max_batch_bytes(64 << 10)
        .linger(Duration::from_secs(60))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(30),
        })
        .start()
        .unwrap();
    record(&p, 5_000);
    // About 220 spans fit in 64 KiB: 5,000 spans fill 20 or more batches.
    // All but the last must arrive long before the minute of linger.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.counts().requests < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = sink.counts();
    assert!(c.requests >= 20, "{c:?}");
    let biggest = biggest_request(&sink);
    assert!(biggest > 150 && biggest < 300, "{biggest}");
    let st = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(st.exported, 5_000);
}

/// With nothing set, a receiver 50 ms away gets larger requests and more of
/// them in flight than the starting 512 spans and 4 requests; with
/// `max_batch_items` and `max_in_flight` set, both stay where they were put.
#[test]
fn defaults_grow_batches_and_concurrency_over_a_long_round_trip_and_settings_are_kept() {
    // The receiver only walks the requests: a receiver slowed by its own
    // decoding (a debug build decoding 1 MB requests) makes the round trip
    // long for a reason more requests would not help, and the adaptive
    // concurrency rightly backs off then.
    let sink_auto = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 1000 },
        latency: Duration::from_millis(50),
        ..SinkOptions::default()
    })
    .unwrap();
    let auto = Pipeline::builder()
        .endpoint(sink_auto.endpoint())
        .workers(1)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(30),
        })
        .start()
        .unwrap();
    record(&auto, 300_000);
    let during = auto.stats();
    let st = auto.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(st.exported, 300_000);
    let c = sink_auto.counts();
    assert_eq!(c.spans, 300_000);
    assert!(
        c.spans / c.requests > 1024,
        "batches did not grow: {} requests",
        c.requests
    );
    assert!(
        during.concurrency_limit > 4,
        "concurrency did not grow: {during:?}"
    );

    let sink_fixed = sink(Duration::from_millis(50));
    let fixed = Pipeline::builder()
        .endpoint(sink_fixed.endpoint())
        .workers(1)
        .max_batch_items(300)
        .max_in_flight(3)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(30),
        })
        .start()
        .unwrap();
    record(&fixed, 30_000);
    let during = fixed.stats();
    let st = fixed.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(st.exported, 30_000);
    let biggest = biggest_request(&sink_fixed);
    assert_eq!(biggest, 300);
    assert_eq!(during.concurrency_limit, 3);
}
