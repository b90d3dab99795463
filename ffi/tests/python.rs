//! Runs the Python bindings' tests (bindings/python/tests) with the system
//! python3 against the embedded receiver and the library cargo just built,
//! then checks the receiver counted exactly the spans they delivered.

mod common;

use std::process::Command;

use otlpflow::sink::{Sink, SinkOptions, Verify};

#[test]
fn python_bindings() {
    let root = common::root();
    let lib = common::lib_dir().join("libotlpflow_ffi.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap();
    let report = std::env::temp_dir().join(format!("otlpflow-py-report-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("bindings/python/tests"))
        .env("OTLPFLOW_LIBRARY", &lib)
        .env("OTLPFLOW_TEST_ENDPOINT", sink.endpoint())
        .env("OTLPFLOW_TEST_REPORT", &report)
        .output()
        .expect("running python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python tests failed:\n{stderr}");
    assert!(
        !stderr.contains("skipped"),
        "python tests were skipped:\n{stderr}"
    );
    let lines = std::fs::read_to_string(&report).unwrap_or_default();
    let sum = |kind: &str| -> u64 {
        lines
            .lines()
            .filter_map(|l| l.trim().strip_prefix(kind)?.trim().parse::<u64>().ok())
            .sum()
    };
    let (expected, logs, points) = (sum("spans "), sum("logs "), sum("points "));
    let _ = std::fs::remove_file(&report);
    let counts = sink.stop();
    assert!(
        expected > 0,
        "the python tests reported no deliveries:\n{stderr}"
    );
    assert_eq!(
        counts.spans, expected,
        "receiver count vs python deliveries\n{stderr}"
    );
    assert_eq!(counts.logs, logs, "logs\n{stderr}");
    assert_eq!(counts.metric_points, points, "metric points\n{stderr}");
    assert!(logs > 0 && points > 0, "{stderr}");
    assert_eq!(counts.errors, 0);
    eprintln!("{stderr}");
}
