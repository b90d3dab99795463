//! The statistics the seed names: export and end-to-end latency with
//! minimum, mean and maximum beside the percentiles; records, bytes and
//! requests per second since start and over the last interval; losses per
//! second by reason. Read from `stats()` and from the Prometheus endpoint
//! after real exports to the embedded receiver.

use std::time::Duration;

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, DropReason, Pipeline, Policy};

mod support;

fn sink(latency: Duration) -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        latency,
        ..SinkOptions::default()
    })
    .unwrap()
}

fn record(p: &Pipeline, seed: u64, n: u64) {
    let scope = p.scope("statistics", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, seed, i, 1).unwrap();
    }
}

#[test]
fn latency_has_min_mean_and_max_beside_the_percentiles() {
    // Every request takes at least the receiver's 20 ms.
    let sink = sink(Duration::from_millis(20));
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .max_batch_items(50)
        .start()
        .unwrap();
    record(&p, 1, 500);
    let s = p.flush(Duration::from_secs(20)).unwrap();
    let l = s.export_latency;
    assert!(l.count >= 10, "{l:?}");
    assert!(l.min_ns >= 20_000_000, "{l:?}");
    assert!(l.min_ns <= l.mean_ns && l.mean_ns <= l.max_ns, "{l:?}");
    assert!(l.min_ns <= l.p50_ns && l.p50_ns <= l.max_ns, "{l:?}");
    let e = s.e2e_latency;
    assert!(e.count >= 1, "{e:?}");
    assert!(
        e.min_ns >= 20_000_000 && e.min_ns <= e.mean_ns && e.mean_ns <= e.max_ns,
        "{e:?}"
    );
    p.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn rates_since_start_and_over_the_last_interval() {
    let sink = sink(Duration::ZERO);
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .start()
        .unwrap();
    record(&p, 2, 300);
    let s = p.flush(Duration::from_secs(20)).unwrap();
    assert!(s.uptime_ms > 0);
    let since = s.rates_since_start;
    assert_eq!(since.window_ms, s.uptime_ms.max(1));
    assert_eq!(since.exported, 300 * 1000 / since.window_ms);
    assert_eq!(since.bytes_wire, s.bytes_wire * 1000 / since.window_ms);
    assert_eq!(since.requests, s.requests * 1000 / since.window_ms);
    // Nothing moves for over a second: the last interval's rates are 0,
    // over a window of at least a second.
    std::thread::sleep(Duration::from_millis(1100));
    let idle = p.stats();
    assert!(idle.rates_last.window_ms >= 1000, "{:?}", idle.rates_last);
    assert_eq!((idle.rates_last.exported, idle.rates_last.requests), (0, 0));
    // 300 more: the last interval counts them (at most all 300 within the
    // window of at least a second).
    record(&p, 3, 300);
    let busy = p.flush(Duration::from_secs(20)).unwrap();
    let last = busy.rates_last;
    assert!(last.exported > 0 && last.exported <= 300, "{last:?}");
    assert_eq!(last.exported, 300 * 1000 / last.window_ms, "{last:?}");
    p.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn losses_per_second_by_reason() {
    // A tiny ring and DropNewest: a burst loses records as `full`.
    let sink = sink(Duration::from_millis(200));
    let p = support::tiny(sink.endpoint(), Policy::DropNewest)
        .start()
        .unwrap();
    let scope = p.scope("statistics", "1");
    for i in 0..5000 {
        let _ = workload::record_benchmark_span(&p, &scope, 4, i, 1);
    }
    let s = p.stats();
    let full = s.dropped[DropReason::Full];
    assert!(full > 0);
    let since = s.rates_since_start;
    assert_eq!(
        since.dropped[DropReason::Full],
        full * 1000 / since.window_ms
    );
    assert!(since.dropped.total() > 0);
    p.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn prometheus_shows_the_spread_and_the_rates() {
    let sink = sink(Duration::ZERO);
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .prometheus("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap();
    record(&p, 5, 200);
    let s = p.flush(Duration::from_secs(20)).unwrap();
    let text = support::scrape(p.prometheus_addr().unwrap());
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
    };
    let stat = |s: &str| {
        value(&format!(
            "otlpflow_export_latency_seconds_stat{{stat=\"{s}\"}}"
        ))
    };
    // No request since the flush: the same histogram as `s`.
    assert_eq!(stat("min"), s.export_latency.min_ns as f64 / 1e9);
    assert_eq!(stat("max"), s.export_latency.max_ns as f64 / 1e9);
    assert!(stat("min") <= stat("mean") && stat("mean") <= stat("max"));
    assert!(value("otlpflow_export_latency_seconds_sum") > 0.0);
    assert!(value("otlpflow_rate_per_second{window=\"start\",what=\"records_exported\"}") > 0.0);
    assert_eq!(
        value("otlpflow_loss_rate_per_second{window=\"last\",kind=\"dropped\",reason=\"full\"}"),
        0.0
    );
    assert!(value("otlpflow_uptime_seconds") > 0.0);
    p.shutdown(Duration::from_secs(10)).unwrap();
}

/// Records one span when dropped: kept in a thread-local, it records
/// while its thread's locals are torn down (as a subscriber's guard dropped
/// at thread exit would), likely after otlpflow's own are gone.
struct RecordAtExit(Pipeline, u64);

impl Drop for RecordAtExit {
    fn drop(&mut self) {
        record(&self.0, self.1, 1);
    }
}

thread_local! {
    static AT_EXIT: std::cell::RefCell<Option<RecordAtExit>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn every_record_is_counted_while_threads_come_and_go() {
    // Each recording thread counts in counters of its own: threads that
    // exit hand theirs on, two pipelines keep theirs apart, and a record
    // made while a thread is torn down is counted too.
    let sink_a = sink(Duration::ZERO);
    let sink_b = sink(Duration::ZERO);
    let a = Pipeline::builder()
        .endpoint(sink_a.endpoint())
        .start()
        .unwrap();
    let b = Pipeline::builder()
        .endpoint(sink_b.endpoint())
        .start()
        .unwrap();
    let mut seed = 10;
    for _round in 0..3 {
        let threads: Vec<_> = (0..6)
            .map(|t| {
                seed += 1;
                let (a, b, seed) = (a.clone(), b.clone(), seed);
                std::thread::spawn(move || {
                    AT_EXIT.with(|x| *x.borrow_mut() = Some(RecordAtExit(a.clone(), seed + 1000)));
                    for i in 0..200u64 {
                        record(if (i + t) % 3 == 0 { &b } else { &a }, seed, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    // 18 threads: 200 records each (67 of them to b), and one more to a
    // at exit.
    let to_b = (0..6u64)
        .map(|t| (0..200u64).filter(|i| (i + t) % 3 == 0).count() as u64)
        .sum::<u64>()
        * 3;
    let sa = a.flush(Duration::from_secs(20)).unwrap();
    let sb = b.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(sb.offered, to_b);
    assert_eq!(sa.offered, 18 * 200 - to_b + 18);
    for (s, sink) in [(&sa, &sink_a), (&sb, &sink_b)] {
        s.check_identity().unwrap();
        assert_eq!(s.accepted, s.offered);
        assert_eq!(s.exported, s.offered);
        assert_eq!(sink.counts().spans, s.offered);
    }
    a.shutdown(Duration::from_secs(10)).unwrap();
    b.shutdown(Duration::from_secs(10)).unwrap();
}
