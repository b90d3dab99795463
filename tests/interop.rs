//! Interop with a real receiver no one here wrote: grpcio (gRPC's C core)
//! and Python's http.server, decoding with the opentelemetry-proto package
//! (`tests/interop/receiver.py`). `.ci/run` installs them in a virtualenv
//! and points OTLPFLOW_INTEROP_PYTHON at its python; without it this test
//! says so and does nothing.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use otlpflow::{workload, Compression, Pipeline, Policy, Protocol};

fn pipeline(endpoint: &str, protocol: Protocol, compression: Compression) -> Pipeline {
    Pipeline::builder()
        .endpoint(endpoint)
        .protocol(protocol)
        .compression(compression)
        .service_name("interop")
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .unwrap()
}

fn send(endpoint: &str, protocol: Protocol, compression: Compression, n: u64) -> otlpflow::Stats {
    let p = pipeline(endpoint, protocol, compression);
    let scope = p.scope("interop", "1");
    for i in 0..n {
        workload::record_benchmark_span(&p, &scope, 11, i, 1_700_000_000_000_000_000).unwrap();
    }
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    assert_eq!(
        (s.exported, s.failed.total()),
        (n, 0),
        "{protocol:?} {compression:?}: {:?}",
        p.last_error()
    );
    s
}

/// Sends `n` log records and `n` metric points (the benchmark shapes) and
/// one counter's collected points.
fn send_logs_and_metrics(endpoint: &str, protocol: Protocol, compression: Compression, n: u64) {
    let p = pipeline(endpoint, protocol, compression);
    let scope = p.scope("interop", "1");
    for i in 0..n {
        workload::record_benchmark_log(&p, &scope, 12, i, 1_700_000_000_000_000_000).unwrap();
        workload::record_benchmark_point(&p, &scope, i, 1_700_000_000_000_000_000).unwrap();
    }
    let c = p.counter(&scope, "interop.ops", "{op}", "");
    c.add(5, &[]);
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    // n points, plus the counter's one at shutdown.
    assert_eq!(
        s.exported_by_signal.to_array(),
        [0, n, n + 1],
        "{:?}",
        p.last_error()
    );
}

#[test]
fn grpcio_and_python_http_receivers_count_every_span() {
    let Ok(python) = std::env::var("OTLPFLOW_INTEROP_PYTHON") else {
        eprintln!("interop: OTLPFLOW_INTEROP_PYTHON not set; .ci/run sets it (skipped here)");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/receiver.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the Python receiver");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ports: Vec<u16> = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("receiver said {line:?}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let grpc = format!("http://127.0.0.1:{}", ports[0]);
    let http = format!("http://127.0.0.1:{}", ports[1]);
    send(&grpc, Protocol::Grpc, Compression::None, 3000);
    send(&grpc, Protocol::Grpc, Compression::Gzip, 2000);
    send(&http, Protocol::HttpProtobuf, Compression::None, 1500);
    send(&http, Protocol::HttpProtobuf, Compression::Gzip, 1000);
    send_logs_and_metrics(&grpc, Protocol::Grpc, Compression::Gzip, 800);
    send_logs_and_metrics(&http, Protocol::HttpProtobuf, Compression::None, 600);
    // The CLI's load generator against the same receivers.
    for (endpoint, protocol) in [(&grpc, "grpc"), (&http, "http/protobuf")] {
        let out = Command::new(env!("CARGO_BIN_EXE_otlpflow"))
            .args([
                "gen",
                "--endpoint",
                endpoint,
                "--protocol",
                protocol,
                "--spans",
                "700",
                "--compression",
                "gzip",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["exported"], 700, "{report}");
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let _ = child.wait();
    let counts: serde_json::Value = serde_json::from_str(rest.trim()).expect("counts JSON");
    assert_eq!(counts["grpc_spans"], 5700, "{counts}");
    assert_eq!(counts["http_spans"], 3200, "{counts}");
    assert_eq!(counts["http_errors"], 0, "{counts}");
    assert_eq!(counts["grpc_logs"], 800, "{counts}");
    assert_eq!(counts["http_logs"], 600, "{counts}");
    assert_eq!(counts["grpc_points"], 801, "{counts}");
    assert_eq!(counts["http_points"], 601, "{counts}");
    assert_eq!(
        counts["metric_errors"], 0,
        "a scope repeated a metric: {counts}"
    );
    assert!(
        counts["grpc_user_agent"]
            .as_str()
            .unwrap()
            .contains("otlpflow/"),
        "{counts}"
    );
    assert_eq!(counts["http_user_agent"], otlpflow::USER_AGENT, "{counts}");
}
