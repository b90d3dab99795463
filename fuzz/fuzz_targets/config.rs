//! Endpoint, size and environment parsing on arbitrary text: no panic, and
//! no error message or `Debug` that repeats a header value or an
//! endpoint's credentials (those here carry a marker that must never come
//! back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otlpflow::{parse_bytes, Endpoint, Pipeline};

const VARS: [&str; 8] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTLPFLOW_MEMORY_BUDGET",
    "OTLPFLOW_CONCURRENCY",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Endpoint::parse(&text);
    // The same text after credentials with the marker.
    for scheme in ["http://", "https://"] {
        let url = format!("{scheme}user:SECRETMARK@{text}");
        match Endpoint::parse(&url) {
            Ok(e) => assert!(!format!("{e:?}").contains("SECRETMARK"), "{e:?}"),
            Err(e) => assert!(!e.to_string().contains("SECRETMARK"), "{e}"),
        }
    }
    let _ = parse_bytes(&text);
    // Split the input over the variables; headers get a secret marker.
    let parts: Vec<&str> = text.split('\u{1}').collect();
    let value = |name: &str| -> Option<String> {
        let i = VARS.iter().position(|v| *v == name)?;
        let p = parts.get(i)?;
        Some(if name == "OTEL_EXPORTER_OTLP_HEADERS" {
            format!("{p}SECRETMARK")
        } else if name.ends_with("_ENDPOINT") {
            // Credentials, after the scheme if there is one.
            match p.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://u:SECRETMARK@{rest}"),
                None => format!("u:SECRETMARK@{p}"),
            }
        } else {
            p.to_string()
        })
    };
    match Pipeline::builder().apply_env_from(value) {
        Ok(b) => {
            assert!(!format!("{b:?}").contains("SECRETMARK"), "{b:?}");
            if let Err(e) = b.build() {
                assert!(!e.to_string().contains("SECRETMARK"), "{e}");
            }
        }
        Err(e) => assert!(!e.to_string().contains("SECRETMARK"), "{e}"),
    }
});
