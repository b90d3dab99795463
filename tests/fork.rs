//! Fork safety: after `fork()`, parent and child both keep recording and
//! both deliver their spans; the child counts what the parent had in flight
//! as `failed_fork`. Alone in its test binary, so no other test thread is
//! running when it forks.

use std::time::Duration;

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, Pipeline, Policy};

fn record(p: &Pipeline, seed: u64, n: u64) {
    let scope = p.scope("fork", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, seed, i, 1_700_000_000_000_000_000)
            .expect("recorded");
    }
}

#[test]
fn parent_and_child_both_deliver_after_fork() {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap();
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .shards(2)
        .workers(1)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .unwrap();
    let scope = p.scope("fork", "1");
    let counter = p.counter(&scope, "fork.ops", "1", "");
    counter.add(5, &[]);
    record(&p, 1, 100);
    p.flush(Duration::from_secs(10)).unwrap();
    // Some records are still in the parent's ring at the fork.
    record(&p, 2, 40);

    // SAFETY: the child only uses otlpflow (whose atfork hooks restart it)
    // and leaves with _exit, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            record(&p, 3, 50);
            // The child's instrument handles keep working: collected by the
            // child's own collector at shutdown.
            counter.add(7, &[]);
            let s = p.shutdown(Duration::from_secs(10)).expect("child shutdown");
            // 140 carried from the parent (100 exported, 40 in flight at the
            // fork, the parent's to send) + 50 of its own.
            // Spans: exported 150; metric points: the parent's flush sent
            // one, the child's shutdown one.
            let ok = s.exported_by_signal.traces == 150
                && s.exported_by_signal.metrics == 2
                && s.failed[otlpflow::FailReason::Fork] == 40
                && s.in_flight == 0;
            if !ok {
                eprintln!("child stats: {s:?}");
            }
            ok
        }));
        // SAFETY: _exit ends the child without running the parent's
        // destructors or atexit handlers.
        unsafe { libc::_exit(if matches!(code, Ok(true)) { 0 } else { 1 }) };
    }
    record(&p, 4, 70);
    counter.add(3, &[]);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.accepted_by_signal.traces, 210, "{s:?}");
    assert_eq!(s.exported_by_signal.to_array(), [210, 0, 2], "{s:?}");
    assert_eq!(s.failed.total(), 0, "{s:?}");
    // Parent: 100 + 40 + 70; child: 50.
    assert_eq!(sink.counts().spans, 260);
    // Parent: flush + shutdown; child: shutdown.
    assert_eq!(sink.counts().metric_points, 3);
}
