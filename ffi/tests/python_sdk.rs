//! The OpenTelemetry Python SDK with otlpflow's span and log processors and
//! metric exporter, compared field by field with the SDK's own OTLP
//! exporter at a second real receiver (bindings/python/tests_sdk). Needs a
//! python with opentelemetry-sdk, its OTLP/gRPC exporter and grpcio:
//! `.ci/run` installs them in the interop virtualenv and points
//! OTLPFLOW_INTEROP_PYTHON at it; without it this test says so and does
//! nothing.

mod common;

use std::process::Command;

#[test]
fn sdk_drop_in_matches_the_sdk_exporter_field_by_field() {
    let Ok(python) = std::env::var("OTLPFLOW_INTEROP_PYTHON") else {
        eprintln!("OTLPFLOW_INTEROP_PYTHON is not set (.ci/run sets it): SDK drop-in test skipped");
        return;
    };
    let root = common::root();
    let lib = common::lib_dir().join("libotlpflow_ffi.so");
    let out = Command::new(python)
        .args(["-W", "ignore", "-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("bindings/python/tests_sdk"))
        .env("OTLPFLOW_LIBRARY", &lib)
        .env("OTLPFLOW_RECEIVER", root.join("tests/interop/receiver.py"))
        .output()
        .expect("running the SDK drop-in tests");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK drop-in tests failed:\n{stderr}");
    assert!(
        !stderr.contains("skipped"),
        "SDK tests were skipped:\n{stderr}"
    );
    assert!(stderr.contains("Ran 1 test"), "{stderr}");
}
