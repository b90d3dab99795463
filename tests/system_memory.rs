//! Refusing records while the system is short of memory
//! (`system_memory_limit`), with the memory figures read from files the
//! test writes (`system_memory_source`): under `DropNewest` records are
//! refused and counted as `dropped.system_memory` and health says Degraded
//! while the pressure lasts, then all is accepted and delivered again;
//! under `Block` a producer waits out the pressure and loses nothing. One
//! test reads this machine's real figures.
//!
//! A test with a real cgroup that the test creates is not possible here:
//! these machines mount cgroup v1 read-only under a tmpfs (`mkdir` in
//! /sys/fs/cgroup fails), so the cgroup paths are exercised with files
//! (both v1 and v2 layouts, in `flow::system_memory`'s unit tests).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otlpflow::flow::MemorySource;
use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, DropReason, Health, Pipeline, Policy, RecordError};

/// A fake /proc/meminfo (no cgroup limit) at `used` percent.
struct FakeMemory {
    dir: PathBuf,
}

impl FakeMemory {
    fn new(name: &str) -> FakeMemory {
        let dir =
            std::env::temp_dir().join(format!("otlpflow-sysmem-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), "0::/\n").unwrap();
        FakeMemory { dir }
    }

    fn set_used_percent(&self, used: u64) {
        let text = format!(
            "MemTotal: 1000000 kB\nMemAvailable: {} kB\n",
            (100 - used) * 10_000
        );
        // Written whole and renamed: the sampler never reads half a file.
        let tmp = self.dir.join("meminfo.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.join("meminfo")).unwrap();
    }

    fn source(&self) -> MemorySource {
        MemorySource {
            cgroup_root: self.dir.join("no-cgroup"),
            proc_self_cgroup: self.dir.join("cgroup"),
            meminfo: self.dir.join("meminfo"),
        }
    }
}

impl Drop for FakeMemory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sink() -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap()
}

/// A pipeline to `sink` refusing over 80% of `mem`'s memory in use.
fn pipeline(sink: &Sink, mem: &FakeMemory, policy: Policy) -> Pipeline {
    Pipeline::builder()
        .endpoint(sink.endpoint())
        .service_name("sysmem")
        .system_memory_limit(0.8)
        .system_memory_source(mem.source())
        .policy(policy)
        .start()
        .unwrap()
}

/// Polls `cond` for up to 5 s (the sampler runs every 100 ms).
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

#[test]
fn over_the_limit_records_are_refused_and_counted_then_accepted_again() {
    let mem = FakeMemory::new("drop");
    mem.set_used_percent(90);
    let sink = sink();
    let p = pipeline(&sink, &mem, Policy::DropNewest);
    let scope = p.scope("sysmem", "1");
    let mut refused = 0;
    for i in 0..100 {
        match workload::record_benchmark_span(&p, &scope, 1, i, 1) {
            Err(RecordError::SystemMemory) => refused += 1,
            other => panic!("span {i}: {other:?}"),
        }
    }
    assert_eq!(refused, 100);
    assert_eq!(p.stats().dropped[DropReason::SystemMemory], 100);
    assert_eq!(p.health(), Health::Degraded);

    mem.set_used_percent(50);
    let mut i = 100;
    assert!(eventually(|| {
        i += 1;
        workload::record_benchmark_span(&p, &scope, 1, i, 1).is_ok()
    }));
    let accepted_before = p.stats().accepted;
    for j in 0..1000 {
        workload::record_benchmark_span(&p, &scope, 1, 10_000 + j, 1).unwrap();
    }
    let stats = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(stats.accepted, accepted_before + 1000);
    assert_eq!(stats.exported, stats.accepted);
    assert_eq!(
        stats.dropped[DropReason::SystemMemory],
        stats.dropped.total()
    );
    assert_eq!(stats.dropped.total() + stats.accepted, stats.offered);
    assert_eq!(sink.stop().spans, stats.exported);
}

#[test]
fn under_block_a_producer_waits_out_the_pressure_and_loses_nothing() {
    let mem = FakeMemory::new("block");
    mem.set_used_percent(95);
    let sink = sink();
    let p = pipeline(
        &sink,
        &mem,
        Policy::Block {
            max_wait: Duration::from_secs(30),
        },
    );
    let scope = p.scope("sysmem", "1");
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (p, done) = (p.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..500 {
                workload::record_benchmark_span(&p, &scope, 2, i, 1).unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    // The producer is parked on the pressure, not refused.
    std::thread::sleep(Duration::from_millis(400));
    assert!(!done.load(Ordering::SeqCst));
    assert_eq!(p.stats().accepted, 0);
    mem.set_used_percent(40);
    producer.join().unwrap();
    let stats = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (stats.accepted, stats.exported, stats.dropped.total()),
        (500, 500, 0)
    );
    assert_eq!(sink.stop().spans, 500);
}

#[test]
fn this_machines_own_figures_are_read() {
    // A limit no machine is under (0.1% of memory in use) refuses; a limit
    // of 100% never does. The figures are the real ones of this process's
    // cgroup or /proc/meminfo.
    if MemorySource::default().used_fraction().is_none() {
        eprintln!("no readable memory figures on this machine: test skipped");
        return;
    }
    let sink = sink();
    for (limit, refused) in [(0.001, true), (1.0, false)] {
        let p = Pipeline::builder()
            .endpoint(sink.endpoint())
            .system_memory_limit(limit)
            .policy(Policy::DropNewest)
            .start()
            .unwrap();
        let scope = p.scope("sysmem", "1");
        let r = workload::record_benchmark_span(&p, &scope, 3, 1, 1);
        assert_eq!(
            r == Err(RecordError::SystemMemory),
            refused,
            "limit {limit}: {r:?}"
        );
        p.shutdown(Duration::from_secs(10)).unwrap();
    }
}
