//! The OpenTelemetry Python SDK with otlpflow's span and log processors and
//! metric exporter, compared field by field with the SDK's own OTLP
//! exporter at a second real receiver, and Python delivering over gRPC and
//! OTLP/HTTP, each in clear and over TLS, to that real receiver
//! (bindings/python/tests_sdk). Needs a
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
    // A CA and a certificate for localhost, for the receiver's TLS ports.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("otlpflow-py-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("cert.pem", cert.pem()),
        ("key.pem", key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    // Twice: span records handed over as the Python objects themselves
    // (CPython's default), and as marshal bytes (the fallback).
    for handover in ["objects", "marshal"] {
        let out = Command::new(&python)
            .args(["-W", "ignore", "-m", "unittest", "discover", "-v", "-s"])
            .arg(root.join("bindings/python/tests_sdk"))
            .env("OTLPFLOW_LIBRARY", &lib)
            .env("OTLPFLOW_RECEIVER", root.join("tests/interop/receiver.py"))
            .env("OTLPFLOW_TLS_DIR", &dir)
            .env("OTLPFLOW_PYTHON_HANDOVER", handover)
            .output()
            .expect("running the SDK drop-in tests");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "SDK drop-in tests ({handover} hand-over) failed:\n{stderr}"
        );
        assert!(
            !stderr.contains("skipped"),
            "SDK tests were skipped:\n{stderr}"
        );
        assert!(stderr.contains("Ran 8 tests"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
