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

/// `tests/interop/receiver.py` running with `args`: its gRPC and HTTP
/// endpoints, and the counts it prints when stopped.
struct Receiver {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    grpc: String,
    http: String,
}

impl Receiver {
    /// Starts it, or `None` (said on stderr) where OTLPFLOW_INTEROP_PYTHON
    /// is not set.
    fn start(args: &[&str]) -> Option<Receiver> {
        let Ok(python) = std::env::var("OTLPFLOW_INTEROP_PYTHON") else {
            eprintln!("interop: OTLPFLOW_INTEROP_PYTHON not set; .ci/run sets it (skipped here)");
            return None;
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
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
        Some(Receiver {
            child,
            out,
            grpc: format!("http://127.0.0.1:{}", ports[0]),
            http: format!("http://127.0.0.1:{}", ports[1]),
        })
    }

    /// Stops it and returns its counts.
    fn stop(mut self) -> serde_json::Value {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        let _ = self.child.wait();
        serde_json::from_str(rest.trim()).expect("counts JSON")
    }
}

#[test]
fn grpcio_and_python_http_receivers_count_every_span() {
    let Some(receiver) = Receiver::start(&[]) else {
        return;
    };
    let (grpc, http) = (receiver.grpc.clone(), receiver.http.clone());
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
    let counts = receiver.stop();
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

/// A receiver may compress its responses: grpcio when its server is set to
/// (grpc-go, the Collector's gRPC, answers with the request's own
/// encoding), an HTTP proxy that compresses what it forwards. Such an
/// answer, here a partial success rejecting one span a request, is read,
/// not counted as a malformed response that loses the whole request.
#[test]
fn compressed_responses_from_grpcio_and_http_are_read() {
    let Some(receiver) = Receiver::start(&["--compress-responses"]) else {
        return;
    };
    let mut rejected = 0;
    for (endpoint, protocol) in [
        (&receiver.grpc, Protocol::Grpc),
        (&receiver.http, Protocol::HttpProtobuf),
    ] {
        let p = pipeline(endpoint, protocol, Compression::Gzip);
        let scope = p.scope("interop", "1");
        for i in 0..2000 {
            workload::record_benchmark_span(&p, &scope, 13, i, 1_700_000_000_000_000_000).unwrap();
        }
        let s = p.shutdown(Duration::from_secs(20)).unwrap();
        let error = p.last_error().unwrap_or_default();
        assert_eq!(s.failed.total(), 0, "{protocol:?}: {error}");
        assert!(s.rejected > 0, "{protocol:?}: {s:?}");
        assert_eq!(s.exported + s.rejected, 2000, "{protocol:?}: {s:?}");
        assert!(error.contains("one span rejected"), "{protocol:?}: {error}");
        rejected += s.rejected;
    }
    let counts = receiver.stop();
    assert_eq!(counts["grpc_spans"], 2000, "{counts}");
    assert_eq!(counts["http_spans"], 2000, "{counts}");
    assert_eq!(counts["rejected"], rejected, "{counts}");
}

/// Some receivers and proxies answer an OTLP/HTTP request in JSON, or with a
/// plain `OK`, whatever the request's type. A 2xx answer is read by its
/// `Content-Type`, as the Collector's exporter reads it: JSON's partial
/// success counts its rejected spans, a text answer is a plain success. Every
/// 2xx body used to be read as protobuf, and such a request, taken by the
/// receiver, was counted `failed[permanent]`.
#[test]
fn json_and_text_answers_to_otlp_http_are_read_by_their_type() {
    for answer in ["json", "text"] {
        let Some(receiver) = Receiver::start(&["--http-answer", answer]) else {
            return;
        };
        let p = pipeline(&receiver.http, Protocol::HttpProtobuf, Compression::None);
        let scope = p.scope("interop", "1");
        for i in 0..2000 {
            workload::record_benchmark_span(&p, &scope, 14, i, 1_700_000_000_000_000_000).unwrap();
        }
        let s = p.shutdown(Duration::from_secs(20)).unwrap();
        let error = p.last_error().unwrap_or_default();
        assert_eq!(s.failed.total(), 0, "{answer}: {error}");
        assert_eq!(s.exported + s.rejected, 2000, "{answer}: {s:?}");
        let counts = receiver.stop();
        assert_eq!(counts["http_spans"], 2000, "{answer}: {counts}");
        assert_eq!(counts["rejected"], s.rejected, "{answer}: {counts}");
        if answer == "json" {
            assert!(s.rejected > 0, "{s:?}");
            assert!(error.contains("one span rejected (JSON)"), "{error}");
        } else {
            assert_eq!(s.rejected, 0, "{s:?}");
        }
    }
}
