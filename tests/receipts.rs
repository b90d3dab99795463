//! Delivery receipts and the async send, end to end through the embedded
//! receiver: acknowledged records match what the receiver counted, and each
//! way to lose a record resolves the receipt with its own outcome (a
//! permanent status, a dead endpoint past the retry budget, a full ring
//! under `DropNewest`, the receiver's partial success). The async send
//! under `Block` waits for room as a future: a current-thread runtime with
//! a stalled receiver keeps running its other tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use otlpflow::sink::{Fault, Sink, SinkOptions, Verify};
use otlpflow::{
    DropReason, FailReason, KeyValue, LogRecord, Pipeline, Policy, Receipt, Severity, Span, Value,
};

mod support;

const WAIT: Duration = Duration::from_secs(20);

fn sink(latency: Duration) -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        latency,
        ..SinkOptions::default()
    })
    .unwrap()
}

/// A pipeline with the default settings to `sink`.
fn started(sink: &Sink) -> Pipeline {
    Pipeline::builder()
        .endpoint(sink.endpoint())
        .start()
        .unwrap()
}

/// One attribute of `pad` bytes, for the spans below.
fn padding(pad: usize) -> String {
    "x".repeat(pad)
}

/// `n` spans with distinct ids, each with the attribute `pad`.
fn spans<'a>(seed: u64, n: usize, attrs: &'a [KeyValue<'a>]) -> Vec<Span<'a>> {
    (0..n as u64)
        .map(|i| Span {
            trace_id: otlpflow::workload::trace_id(seed, i),
            span_id: (i + 1 + (seed << 32)).to_le_bytes(),
            name: "receipt",
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_000_100_000 + i,
            attributes: attrs,
            ..Default::default()
        })
        .collect()
}

/// Records `n` spans of `pad`-byte attributes under one receipt.
fn acked(p: &Pipeline, scope: &otlpflow::Scope, seed: u64, n: usize, pad: usize) -> Receipt {
    let filler = padding(pad);
    let attrs = [KeyValue::new("pad", Value::Str(&filler))];
    p.record_batch_acked(scope, &spans(seed, n, &attrs))
}

#[test]
fn acknowledged_receipts_match_the_receivers_count() {
    let sink = sink(Duration::ZERO);
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .linger(Duration::from_millis(5))
        .start()
        .unwrap();
    let scope = p.scope("receipts", "1");
    // Several producer threads, each with several receipts of batches that
    // split across requests (200 spans, batches of up to 512 shared by all).
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (p, scope) = (p.clone(), scope);
            std::thread::spawn(move || {
                (0..5u64)
                    .map(|k| acked(&p, &scope, t * 10 + k, 200, 16))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let receipts: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut delivered = 0;
    for r in &receipts {
        let d = r.wait(WAIT).expect("receipt resolved");
        assert!(d.all_delivered(), "{d:?}");
        assert_eq!((d.records, d.lost(), d.message.as_deref()), (200, 0, None));
        delivered += d.delivered;
    }
    // Logs too, with a single-record receipt.
    let log = LogRecord {
        time_unix_nano: 1,
        severity_number: Severity::INFO,
        body: Some(Value::Str("acked")),
        ..Default::default()
    };
    let d = p.record_logs_acked(&scope, &[log]).wait(WAIT).unwrap();
    assert_eq!((d.records, d.delivered), (1, 1));
    // Resolved only once the receiver answered: its count is already there.
    let counts = sink.counts();
    assert_eq!(delivered, 4000);
    assert_eq!(counts.spans, 4000);
    assert_eq!(counts.logs, 1);
    let stats = p.shutdown(WAIT).unwrap();
    assert_eq!(stats.exported, 4001);
}

#[test]
fn a_permanent_status_fails_the_receipt_with_its_message() {
    let sink = sink(Duration::ZERO);
    // INVALID_ARGUMENT: not retryable.
    sink.inject(
        Fault::GrpcStatus {
            code: 3,
            retry_info: None,
        },
        1,
    );
    let p = started(&sink);
    let scope = p.scope("receipts", "1");
    let r = acked(&p, &scope, 1, 10, 8);
    p.flush(WAIT).unwrap();
    let d = r.wait(WAIT).unwrap();
    assert_eq!((d.records, d.delivered), (10, 0));
    assert_eq!(d.failed[FailReason::Permanent], 10, "{d:?}");
    let message = d.message.unwrap_or_default();
    assert!(
        message.contains("InvalidArgument") || message.contains("3"),
        "{message}"
    );
    // The next receipt is delivered: the fault answered one request.
    let d = acked(&p, &scope, 2, 10, 8).wait(WAIT).unwrap();
    assert!(d.all_delivered(), "{d:?}");
    p.shutdown(WAIT).unwrap();
}

#[test]
fn a_dead_endpoint_past_the_retry_budget_fails_the_receipt_as_exhausted() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Pipeline::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .retry(otlpflow::RetryConfig {
            max_elapsed: Duration::from_millis(600),
            ..Default::default()
        })
        .start()
        .unwrap();
    let scope = p.scope("receipts", "1");
    let r = acked(&p, &scope, 3, 5, 8);
    let d = r.wait(WAIT).expect("resolved within the retry budget");
    assert_eq!(d.failed[FailReason::Exhausted], 5, "{d:?}");
    assert!(d.message.is_some(), "the connection error is reported");
    let stats = p.shutdown(Duration::from_millis(200)).unwrap();
    assert_eq!(stats.failed[FailReason::Exhausted], 5);
}

#[test]
fn a_full_ring_under_drop_newest_counts_against_the_receipt() {
    // One request at a time to a receiver that takes 500 ms: the worker
    // holds at most a batch or two while the ring fills.
    let sink = sink(Duration::from_millis(500));
    let p = support::tiny(sink.endpoint(), Policy::DropNewest)
        .start()
        .unwrap();
    let scope = p.scope("receipts", "1");
    let r = acked(&p, &scope, 4, 5000, 200);
    let d = r.wait(Duration::from_secs(60)).unwrap();
    let full = d.dropped[DropReason::Full];
    assert!(full > 0, "{d:?}");
    assert_eq!(d.delivered + full, 5000, "{d:?}");
    let stats = p.shutdown(WAIT).unwrap();
    assert_eq!(stats.dropped[DropReason::Full], full);
    assert_eq!(sink.stop().spans, d.delivered);
}

#[test]
fn partial_success_reports_the_rejected_records() {
    let sink = sink(Duration::ZERO);
    sink.inject(
        Fault::PartialSuccess {
            rejected: 3,
            message: "3 spans too old".into(),
        },
        1,
    );
    let p = started(&sink);
    let scope = p.scope("receipts", "1");
    let d = acked(&p, &scope, 5, 10, 8).wait(WAIT).unwrap();
    assert_eq!((d.delivered, d.rejected), (7, 3), "{d:?}");
    assert_eq!(d.message.as_deref(), Some("3 spans too old"));
    p.shutdown(WAIT).unwrap();
}

#[test]
fn refused_records_settle_at_once_and_an_empty_receipt_is_resolved() {
    let sink = sink(Duration::ZERO);
    let p = started(&sink);
    let other = started(&sink);
    // A scope of another pipeline: every record refused as invalid.
    let foreign = other.scope("receipts", "1");
    let r = acked(&p, &foreign, 6, 4, 8);
    let d = r.try_get().expect("resolved without waiting");
    assert_eq!(d.dropped[DropReason::Invalid], 4);
    assert!(p.record_batch_acked(&foreign, &[]).is_resolved());
    other.shutdown(WAIT).unwrap();
    p.shutdown(WAIT).unwrap();
}

#[test]
fn shutdown_settles_what_it_could_not_send() {
    let sink = sink(Duration::from_secs(30));
    let p = started(&sink);
    let scope = p.scope("receipts", "1");
    let r = acked(&p, &scope, 7, 50, 8);
    p.shutdown(Duration::from_millis(300)).unwrap();
    let d = r.wait(WAIT).unwrap();
    assert_eq!(d.failed[FailReason::Shutdown], 50, "{d:?}");
}

#[test]
fn async_send_under_block_leaves_a_current_thread_runtime_running() {
    // The receiver never answers within the test; the ring is small, so
    // the sender soon waits for room.
    let sink = sink(Duration::from_secs(60));
    let block = Policy::Block {
        max_wait: Duration::from_secs(1),
    };
    let p = support::tiny(sink.endpoint(), block)
        .max_batch_items(64)
        .start()
        .unwrap();
    let scope = p.scope("receipts", "1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let (result, ticks_while_sending) = rt.block_on(async {
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                for _ in 0..1000 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // One record at a time until one waits its whole 1 s for room and
        // is refused (bounded at 5,000 records).
        let filler = padding(200);
        let attrs = [KeyValue::new("pad", Value::Str(&filler))];
        let all = spans(8, 5000, &attrs);
        let mut result = otlpflow::BatchResult::default();
        let mut before_wait = 0;
        for s in &all {
            before_wait = ticks.load(Ordering::Relaxed);
            let r = p.send(&scope, std::slice::from_ref(s)).await;
            result.accepted += r.accepted;
            result.dropped += r.dropped;
            if r.dropped > 0 {
                break;
            }
        }
        let seen = ticks.load(Ordering::Relaxed) - before_wait;
        ticker.abort();
        (result, seen)
    });
    // The last record waited its 1 s for room, and the ticker (every
    // 10 ms) ran meanwhile on the same thread: a parked thread would have
    // let it tick at most once.
    assert_eq!(result.dropped, 1, "{result:?}");
    assert!(ticks_while_sending >= 30, "ticks {ticks_while_sending}");
    let stats = p.shutdown(Duration::from_millis(200)).unwrap();
    assert_eq!(stats.dropped[DropReason::Full], 1);
    assert_eq!(stats.offered, result.accepted + 1);
}

#[test]
fn async_send_acked_is_delivered() {
    let sink = sink(Duration::ZERO);
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .policy(Policy::Block {
            max_wait: Duration::from_secs(5),
        })
        .start()
        .unwrap();
    let scope = p.scope("receipts", "1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt.block_on(async {
        let filler = padding(8);
        let attrs = [KeyValue::new("pad", Value::Str(&filler))];
        let r = p.send_acked(&scope, &spans(9, 100, &attrs)).await;
        r.delivered().await
    });
    assert!(d.all_delivered(), "{d:?}");
    assert_eq!(sink.counts().spans, 100);
}
