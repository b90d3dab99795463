//! The disk spool: requests whose endpoint does not answer go to segment
//! files and come back when it does. A receiver down for 20 s under a 4 MiB
//! memory budget and `DropNewest` loses nothing; a second pipeline on the
//! same directory replays what the first left (and cannot start while the
//! first holds the lock); a flipped byte and a torn tail cost exactly the
//! requests they hit, counted, and the rest is delivered. What was spooled
//! goes to an endpoint in the set, in the protocol and compression the
//! pipeline sends with when it is replayed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, Pipeline, Policy};

mod support;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("otlpflow-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dead_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn sink_at(addr: std::net::SocketAddr) -> Sink {
    Sink::start(SinkOptions {
        grpc_addr: addr,
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap()
}

fn pipeline(addr: std::net::SocketAddr, dir: &Path) -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .endpoint(format!("http://{addr}"))
        .spool(dir, 64 << 20)
        .max_batch_items(100)
        .linger(Duration::from_millis(5))
}

/// Polls `cond` every 20 ms for up to `secs`.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn record(p: &Pipeline, seed: u64, n: u64) {
    let scope = p.scope("spool", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, seed, i, 1).unwrap();
    }
}

#[test]
fn a_receiver_down_for_20_s_under_a_4_mib_budget_loses_nothing() {
    let dir = TempDir::new("outage");
    let addr = dead_port();
    let p = pipeline(addr, &dir.0)
        .memory_budget(4 << 20)
        .policy(Policy::DropNewest)
        .start()
        .unwrap();
    let scope = p.scope("spool", "1");
    // 10,000 spans a second for the first 15 s of the outage (about 3 MB a
    // second of OTLP: the budget holds about a second of it).
    let down = Instant::now();
    let mut offered = 0u64;
    while down.elapsed() < Duration::from_secs(15) {
        let t = Instant::now();
        for _ in 0..1_000 {
            // Refusals are counted in the stats; the test asserts none.
            let _ = workload::record_benchmark_span(&p, &scope, 1, offered, 1);
            offered += 1;
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
    }
    std::thread::sleep(Duration::from_secs(20).saturating_sub(down.elapsed()));
    let mid = p.stats();
    assert!(mid.spooled > 0 && mid.spool.bytes > 0, "{mid:?}");
    let sink = sink_at(addr);
    // Delivered, and the spool empty: every replayed request's answer is
    // in (shutdown does not wait for replays, which a later process would
    // send again).
    assert!(
        eventually(60, || sink.counts().spans >= offered
            && p.stats().spool.bytes == 0),
        "{:?} {}",
        p.stats(),
        sink.counts().spans
    );
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.dropped.total(), 0, "{s:?}");
    assert_eq!(s.failed.total(), 0, "{s:?}");
    assert_eq!(s.accepted, offered);
    assert_eq!(s.exported + s.spool.replayed, offered, "{s:?}");
    assert_eq!(sink.counts().spans, offered, "each span once");
    assert!(s.memory_peak <= 4 << 20, "{s:?}");
    s.check_identity().unwrap();
}

#[test]
fn a_second_pipeline_replays_what_the_first_left_and_the_lock_keeps_it_out_meanwhile() {
    let dir = TempDir::new("restart");
    let addr = dead_port();
    let first = pipeline(addr, &dir.0).start().unwrap();
    record(&first, 2, 5_000);
    assert!(
        eventually(30, || first.stats().spooled == 5_000),
        "{:?}",
        first.stats()
    );
    let e = pipeline(addr, &dir.0)
        .start()
        .err()
        .expect("the lock is held");
    assert!(e.to_string().contains("in use"), "{e}");
    first.shutdown(Duration::from_millis(200)).unwrap();
    drop(first);

    let sink = sink_at(addr);
    let second = pipeline(addr, &dir.0).start().unwrap();
    assert!(
        eventually(30, || sink.counts().spans >= 5_000
            && second.stats().spool.bytes == 0),
        "{:?}",
        second.stats()
    );
    let s = second.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((s.accepted, s.spool.replayed, s.spool.bytes), (0, 5_000, 0));
    assert_eq!(sink.counts().spans, 5_000);
}

#[test]
fn a_flipped_byte_and_a_torn_tail_cost_only_the_requests_they_hit() {
    let dir = TempDir::new("corrupt");
    let addr = dead_port();
    let first = pipeline(addr, &dir.0).start().unwrap();
    record(&first, 3, 3_000);
    assert!(
        eventually(30, || first.stats().spooled == 3_000),
        "{:?}",
        first.stats()
    );
    first.shutdown(Duration::from_millis(200)).unwrap();
    drop(first);
    // Flip a byte inside the first request of the oldest segment, and cut
    // the last request of the newest one short (the same file when there
    // is one).
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    assert!(!segs.is_empty());
    let mut data = std::fs::read(&segs[0]).unwrap();
    data[16 + 8 + 60] ^= 0x5A;
    std::fs::write(&segs[0], data).unwrap();
    let last = segs.last().unwrap();
    let mut data = std::fs::read(last).unwrap();
    data.truncate(data.len() - 10);
    std::fs::write(last, data).unwrap();

    let sink = sink_at(addr);
    let second = pipeline(addr, &dir.0).start().unwrap();
    assert!(
        eventually(30, || second.stats().spool.bytes == 0),
        "{:?}",
        second.stats()
    );
    let s = second.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.spool.corrupt, 2, "{s:?}");
    assert_eq!(s.spool.replayed, 2_800, "{s:?}");
    assert_eq!(sink.counts().spans, 2_800);
}

/// CRC-32C, one bit at a time (the engine uses a table).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The OTLP records in a spool directory's intact requests, read with the
/// format's definition: a 16-byte header, then length, CRC-32C and body
/// (signal, key length and key, records, request).
fn spooled_records(dir: &Path) -> u64 {
    let mut n = 0;
    let Ok(list) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in list {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "seg") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if data.len() < 16 || &data[..8] != b"OTLPFSPL" {
            continue;
        }
        let mut at = 16;
        while at + 8 <= data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap());
            let Some(body) = data.get(at + 8..at + 8 + len) else {
                break;
            };
            at += 8 + len;
            if crc32c(body) != crc {
                continue;
            }
            let key = u16::from_le_bytes([body[1], body[2]]) as usize;
            n += u32::from_le_bytes(body[3 + key..7 + key].try_into().unwrap()) as u64;
        }
    }
    n
}

fn gen(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_otlpflow"));
    c.arg("gen").args(args);
    c
}

#[test]
fn gen_killed_while_the_receiver_is_down_leaves_its_spool_to_the_next_gen() {
    let dir = TempDir::new("kill9");
    let addr = dead_port();
    let endpoint = format!("http://{addr}");
    let spool = dir.0.to_str().unwrap();
    let mut first = gen(&[
        "--endpoint",
        &endpoint,
        "--spool-dir",
        spool,
        "--rate",
        "5000",
        "--duration",
        "60",
        "--batch",
        "100",
        "--threads",
        "1",
        "--json",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    assert!(eventually(30, || spooled_records(&dir.0) >= 5_000));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let left = spooled_records(&dir.0);
    assert!(left >= 5_000, "{left}");

    let sink = sink_at(addr);
    let r = support::json_report(&mut gen(&[
        "--endpoint",
        &endpoint,
        "--spool-dir",
        spool,
        "--spans",
        "0",
        "--json",
    ]));
    assert_eq!(r["spool"]["replayed"], left, "{r}");
    assert_eq!(sink.counts().spans, left);
    assert_eq!(
        spooled_records(&dir.0),
        0,
        "segments deleted once acknowledged"
    );
}

#[test]
fn a_full_filesystem_is_counted_and_the_pipeline_carries_on_in_memory() {
    // A 64 KiB tmpfs in a mount namespace of our own (an unprivileged user
    // namespace): room for two requests, then ENOSPC. Mode 0700: a tmpfs
    // root is 1777 by default, which the spool refuses.
    let probe = std::process::Command::new("unshare")
        .args(["-Urm", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("unshare -Urm is not available here: test skipped");
        return;
    }
    let dir = TempDir::new("enospc");
    std::fs::create_dir_all(&dir.0).unwrap();
    let addr = dead_port();
    let script = format!(
        "mount -t tmpfs -o size=64k,mode=0700 none {d} && exec {gen} gen --endpoint http://{addr} \
         --spool-dir {d} --spans 20000 --batch 100 --threads 1 --json",
        d = dir.0.display(),
        gen = env!("CARGO_BIN_EXE_otlpflow"),
    );
    let child = std::process::Command::new("unshare")
        .args(["-Urm", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let sink = sink_at(addr);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["spool"]["errors"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        (r["dropped"].as_u64(), r["failed"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    let delivered = r["exported"].as_u64().unwrap() + r["spool"]["replayed"].as_u64().unwrap();
    assert_eq!(delivered, 20_000, "{r}");
    assert_eq!(sink.counts().spans, 20_000);
}

#[test]
fn requests_evicted_from_the_retry_queue_wait_on_disk() {
    use otlpflow::sink::Fault;
    // Every request is throttled with a long RetryInfo at first: requests
    // pile up waiting for their retry and fresh batches evict the oldest,
    // which go to the spool instead of being lost.
    let dir = TempDir::new("evict");
    let sink = Sink::start(SinkOptions::default()).unwrap();
    sink.inject(
        Fault::GrpcStatus {
            code: 8,
            retry_info: Some(Duration::from_secs(1)),
        },
        10,
    );
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .spool(&dir.0, 64 << 20)
        .workers(1)
        .max_in_flight(2)
        .max_batch_items(100)
        .policy(Policy::DropNewest)
        .retry_queue(otlpflow::RetryQueue::DropOldest)
        .start()
        .unwrap();
    record(&p, 4, 3_000);
    p.flush(Duration::from_secs(30)).unwrap();
    let accepted = p.stats().accepted;
    assert!(
        eventually(30, || sink.counts().spans >= accepted
            && p.stats().spool.bytes == 0),
        "{:?}",
        p.stats()
    );
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.failed.total(), 0, "{s:?}");
    assert!(s.spooled > 0, "{s:?}");
    assert_eq!(s.exported + s.spool.replayed, s.accepted, "{s:?}");
    assert_eq!(sink.counts().spans, s.accepted);
}

#[test]
fn what_was_spooled_for_an_endpoint_that_left_the_set_is_replayed_to_one_in_it() {
    // Spans spooled while their only endpoint was down, then the endpoint
    // set changed to a live receiver (a DNS name whose old address went
    // away, a `set_endpoints`): the spooled requests go to the set's
    // endpoint, not on knocking at the address that left it.
    let dir = TempDir::new("moved");
    let gone = dead_port();
    let p = pipeline(gone, &dir.0).start().unwrap();
    record(&p, 5, 2_000);
    assert!(
        eventually(30, || p.stats().spooled == 2_000),
        "{:?}",
        p.stats()
    );
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap();
    assert!(p
        .set_endpoints(otlpflow::Signal::Traces, &[sink.endpoint()])
        .unwrap());
    assert!(
        eventually(30, || sink.counts().spans >= 2_000
            && p.stats().spool.bytes == 0),
        "{:?} {}",
        p.stats(),
        sink.counts().spans
    );
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((s.spool.replayed, s.failed.total()), (2_000, 0), "{s:?}");
    assert_eq!(sink.counts().spans, 2_000, "each span once");
}

#[test]
fn a_spool_written_with_one_protocol_and_compression_is_replayed_with_another() {
    // A new release of a service moves from OTLP/gRPC to OTLP/HTTP, or
    // from zstd to gzip or none, while its spool holds requests framed and
    // compressed the old way: they are converted, not sent as they are
    // (which the receiver refused, 1,000 of 1,000 spans counted failed).
    use otlpflow::{Compression as C, Protocol as P};
    let sink = Sink::start(SinkOptions {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap();
    let mut total = 0;
    for (n, (before, after)) in [
        ((P::Grpc, C::Zstd), (P::Grpc, C::None)),
        ((P::Grpc, C::Gzip), (P::HttpProtobuf, C::Zstd)),
        ((P::HttpProtobuf, C::None), (P::Grpc, C::Gzip)),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = TempDir::new(&format!("reform{n}"));
        let first = pipeline(dead_port(), &dir.0)
            .protocol(before.0)
            .compression(before.1)
            .start()
            .unwrap();
        record(&first, 6 + n as u64, 1_000);
        assert!(
            eventually(30, || first.stats().spooled == 1_000),
            "{:?}",
            first.stats()
        );
        first.shutdown(Duration::from_millis(200)).unwrap();
        drop(first);
        let endpoint = match after.0 {
            P::Grpc => sink.endpoint(),
            P::HttpProtobuf => sink.http_endpoint().unwrap(),
        };
        let second = Pipeline::builder()
            .endpoint(endpoint)
            .spool(&dir.0, 64 << 20)
            .protocol(after.0)
            .compression(after.1)
            .start()
            .unwrap();
        total += 1_000;
        assert!(
            eventually(30, || sink.counts().spans >= total
                && second.stats().spool.bytes == 0),
            "{before:?} -> {after:?}: {:?} {:?}",
            second.stats(),
            second.last_error()
        );
        let s = second.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (s.spool.replayed, s.spool.failed),
            (1_000, 0),
            "{before:?} -> {after:?}: {s:?}"
        );
        assert_eq!(sink.counts().errors, 0, "{before:?} -> {after:?}");
    }
    assert_eq!(sink.counts().spans, total, "each span once");
}
