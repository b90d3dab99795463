//! The command-line tool end to end: `otlpflow sink` and `otlpflow gen`
//! against each other over both protocols, and `demo --json`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn gen_and_sink_work_against_each_other() {
    let (grpc, http) = (free_port(), free_port());
    let mut sink = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
        .args([
            "sink",
            "--grpc",
            &format!("127.0.0.1:{grpc}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ])
        .args(["--duration", "60", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until both ports accept.
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err()
    {
        assert!(t.elapsed() < Duration::from_secs(10), "sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sent = 0;
    for args in [
        vec![
            "--endpoint".to_owned(),
            format!("http://127.0.0.1:{grpc}"),
            "--compression".into(),
            "zstd".into(),
        ],
        vec![
            "--endpoint".to_owned(),
            format!("http://127.0.0.1:{http}"),
            "--protocol".into(),
            "http/protobuf".into(),
        ],
        vec![
            "--endpoint".to_owned(),
            format!("http://127.0.0.1:{http}"),
            "--protocol".into(),
            "http/protobuf".into(),
            "--http2".into(),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
            .arg("gen")
            .args(&args)
            .args(["--spans", "20000", "--header", "x-api-key=k", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["exported"], 20000, "{report}");
        assert!(
            report.get("received").is_none(),
            "gen has no receiver of its own"
        );
        sent += 20000;
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(sink.id() as i32, libc::SIGTERM) };
    let mut out = String::new();
    sink.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(sink.wait().unwrap().success());
    let counts: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(counts["spans"], sent, "{counts}");
    assert_eq!(counts["errors"], 0, "{counts}");
}

#[test]
fn demo_json_reports_what_the_receiver_counted() {
    let r = demo_json(&[
        "--spans",
        "30000",
        "--threads",
        "2",
        "--protocol",
        "http/protobuf",
        "--compression",
        "gzip",
    ])
    .0;
    for key in [
        "offered",
        "accepted",
        "exported",
        "dropped",
        "failed",
        "received",
        "spans_per_sec",
        "elapsed_s",
        "raw_bytes",
        "wire_bytes",
        "requests",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }
    assert_eq!(
        (r["offered"].as_u64(), r["received"].as_u64()),
        (Some(30000), Some(30000)),
        "{r}"
    );
    assert_eq!(r["dropped"], 0);
}

#[test]
fn gen_paces_to_the_rate_and_stops_at_the_duration() {
    let port = free_port();
    let mut sink = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
        .args([
            "sink",
            "--grpc",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "30",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
        .args([
            "gen",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--duration",
            "1",
            "--rate",
            "4000",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let offered = r["offered"].as_u64().unwrap();
    // Pacing never runs ahead of the rate (one 64-span check per thread of
    // slack), and the duration ends the run.
    assert!(
        offered > 0 && offered <= 4000 + 2 * 64,
        "offered {offered} in 1 s at 4000/s"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(r["exported"], offered);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(sink.id() as i32, libc::SIGTERM) };
    let mut s = String::new();
    sink.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    let _ = sink.wait();
    let counts: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
    assert_eq!(counts["spans"].as_u64(), Some(offered));
}

#[test]
fn demo_reports_flow_control_under_a_memory_budget_and_a_throttling_receiver() {
    // Under Block with a 1 MiB budget and a receiver that serves 2 requests
    // at once and throttles the rest, everything still arrives; the report
    // shows the budget's peak, the final concurrency and the throttles.
    let r = demo_json(&[
        "--spans",
        "40000",
        "--threads",
        "2",
        "--memory-budget",
        "1MiB",
        "--concurrency",
        "adaptive",
        "--sink-latency-ms",
        "2",
        "--sink-max-concurrent",
        "2",
    ])
    .0;
    assert_eq!(r["received"].as_u64(), Some(40000), "{r}");
    assert_eq!(r["dropped"], 0, "{r}");
    let peak = r["memory_peak_bytes"].as_u64().unwrap();
    assert!(peak > 0 && peak <= (1 << 20) + 512 * 400, "{r}");
    assert!(r["concurrency_limit"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["dropped_by_reason"].get("memory").is_some(), "{r}");
    assert!(r["failed_by_reason"].get("evicted").is_some(), "{r}");
    assert!(r.get("throttled_by_receiver").is_some(), "{r}");
}

#[test]
fn demo_warns_on_stderr_when_records_are_lost() {
    // DropNewest against a slow receiver with one request in flight: the
    // producers outrun it; the warning goes to stderr, the report to stdout.
    // Batches fixed at 200 spans: grown to 8,192 over the 20 ms round trip,
    // the receiver took 122k spans/s, and a debug build's producers, sharing
    // two vCPUs with the other tests, once offered no faster (0 dropped);
    // at 200 it takes at most 10k spans/s.
    let (r, stderr) = demo_json(&[
        "--spans",
        "100000",
        "--policy",
        "drop",
        "--sink-latency-ms",
        "20",
        "--concurrency",
        "1",
        "--batch",
        "200",
    ]);
    assert!(r["dropped"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(stderr.matches("losing records").count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("no longer being lost").count(),
        1,
        "{stderr}"
    );
}

/// Runs `otlpflow demo --json ARGS`, which must succeed; returns the report
/// and what it wrote on stderr.
fn demo_json(args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
        .arg("demo")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// A malformed `--header` is refused without echoing it (its value is a
/// credential more often than not); a size the CLI cannot read says what
/// it takes.
#[test]
fn bad_flags_are_refused_without_echoing_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
        .args([
            "gen",
            "--endpoint",
            "http://127.0.0.1:9",
            "--spans",
            "1",
            "--header",
            "Authorization Bearer s3cret",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--header number 1"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
        .args(["demo", "--spans", "1", "--memory-budget", "8XB"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("8MiB"), "{stderr}");
    // `--set`: without `=`, or a name the library does not have, or a value
    // the setting does not take: refused, the value never shown.
    for set in [
        "header.authorization Bearer s3cret",
        "no_such_setting=s3cret",
        "ring_eviction=s3cret",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
            .args(["demo", "--spans", "1", "--set", "workers=1", "--set", set])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[test]
fn demo_takes_any_library_setting_by_name() {
    // Batches of at most 100 spans: at least 200 requests for 20,000 spans
    // (the default batch is 512); the workers evict the ring lines read.
    let (r, stderr) = demo_json(&[
        "--spans",
        "20000",
        "--set",
        "max_batch_items=100",
        "--set",
        "ring_eviction=true",
    ]);
    assert_eq!(r["received"], 20000, "{r} {stderr}");
    assert!(r["requests"].as_u64().unwrap() >= 200, "{r}");
}

#[test]
fn gen_routes_across_repeated_endpoints() {
    use otlpflow::sink::{Sink, SinkOptions};
    let sinks: Vec<Sink> = (0..2)
        .map(|_| Sink::start(SinkOptions::default()).unwrap())
        .collect();
    let r = support::json_report(
        Command::new(env!("CARGO_BIN_EXE_otlpflow"))
            .args(["gen", "--spans", "20000", "--threads", "2", "--json"])
            .args(
                sinks
                    .iter()
                    .flat_map(|s| ["--endpoint".to_owned(), s.endpoint()]),
            ),
    );
    assert_eq!(r["exported"], 20000, "{r}");
    let counts: Vec<u64> = sinks.into_iter().map(|s| s.stop().spans).collect();
    // Both receivers got a share (the benchmark spans carry many trace ids).
    assert_eq!(counts.iter().sum::<u64>(), 20000);
    assert!(counts.iter().all(|n| *n > 2000), "{counts:?}");
}
