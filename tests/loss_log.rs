//! The loss warnings: one when records start being lost, one when the loss
//! stops, never one per record. Its own test binary, because the logger is
//! process-wide.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, Pipeline, Policy};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("otlpflow") {
            LINES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

#[test]
fn loss_is_logged_when_it_starts_and_when_it_stops() {
    log::set_logger(&Capture).expect("logger");
    log::set_max_level(log::LevelFilter::Info);
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        latency: Duration::from_millis(50),
        ..SinkOptions::default()
    })
    .expect("sink");
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .shards(1)
        .workers(1)
        .ring_bytes(1 << 14)
        .max_batch_items(20)
        .max_in_flight(1)
        .policy(Policy::DropNewest)
        .start()
        .expect("start");
    let scope = p.scope("losslog", "1");
    // A burst far beyond a 16 KiB ring: thousands of drops.
    for i in 0..5_000 {
        let _ = workload::record_benchmark_span(&p, &scope, 1, i, 1_700_000_000);
    }
    let dropped = p.stats().dropped[otlpflow::DropReason::Full];
    assert!(dropped > 1_000, "{dropped}");
    // Then quiet: the loss episode ends after two seconds without a loss.
    let t0 = Instant::now();
    let ended = || {
        LINES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.contains("no longer being lost"))
    };
    while !ended() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let started: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("losing records"))
        .collect();
    let stopped: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("no longer being lost"))
        .collect();
    assert_eq!(started.len(), 1, "{lines:?}");
    assert!(started[0].starts_with("WARN"), "{lines:?}");
    assert!(started[0].contains("full"), "{lines:?}");
    assert_eq!(stopped.len(), 1, "{lines:?}");
    // The stop message counts every record lost in the episode.
    assert!(
        stopped[0].contains(&format!("{} lost", s.dropped.total())),
        "{lines:?} vs {s:?}"
    );
}
