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
        http_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
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
        .env("OTLPFLOW_TEST_HTTP_ENDPOINT", sink.http_endpoint().unwrap())
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

/// The fields of `typedef struct NAME { ... }` in the header, with their
/// array lengths (1 for scalars).
fn header_fields(header: &str, name: &str) -> Vec<(String, String)> {
    let start = header
        .find(&format!("typedef struct {name} {{"))
        .unwrap_or_else(|| panic!("{name} not in the header"));
    let body = &header[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| {
            let decl = l.trim_end_matches(';');
            // A function pointer, `ret (*name)(args)`, is named inside.
            let field = match decl.split_once("(*") {
                Some((_, rest)) => rest.split(')').next().unwrap(),
                None => decl.rsplit(' ').next().unwrap().trim_start_matches('*'),
            };
            match field.split_once('[') {
                Some((f, n)) => (f.to_owned(), n.trim_end_matches(']').to_owned()),
                None => (field.to_owned(), "1".to_owned()),
            }
        })
        .collect()
}

/// The Python ctypes mirrors of `otlpflow_stats`, `otlpflow_metric_point`
/// and `otlpflow_delivery` have the C structs' fields, in order, at the
/// same offsets, with the same array lengths and the same size: a field
/// added to one and not the other fails here.
#[test]
fn python_struct_mirrors_match_the_c_structs() {
    for (c_name, py_name) in [
        ("otlpflow_stats", "Stats"),
        ("otlpflow_metric_point", "MetricPoint"),
        ("otlpflow_delivery", "Delivery"),
        ("otlpflow_endpoint_stats", "EndpointStats"),
        ("otlpflow_python_api", "PythonApi"),
    ] {
        check_mirror(c_name, py_name);
    }
}

fn check_mirror(c_name: &str, py_name: &str) {
    let root = common::root();
    let header = std::fs::read_to_string(root.join("include/otlpflow.h")).unwrap();
    let fields = header_fields(&header, c_name);
    assert!(fields.len() >= 7, "{fields:?}");
    // The C side: a program printing name, offset and length of each field.
    let dir = common::lib_dir();
    let src = dir.join(format!("{c_name}_layout.c"));
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"otlpflow.h\"\nint main(void) {\n",
    );
    for (f, n) in &fields {
        c.push_str(&format!(
            "  printf(\"{f} %zu %zu\\n\", offsetof({c_name}, {f}), (size_t)({n}));\n"
        ));
    }
    c.push_str(&format!(
        "  printf(\"sizeof %zu 1\\n\", sizeof({c_name}));\n  return 0;\n}}\n"
    ));
    std::fs::write(&src, c).unwrap();
    let exe = dir.join(format!("{c_name}_layout"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .arg("-I")
        .arg(root.join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "compiling the layout probe");
    let c_layout = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    // The Python side: the ctypes Structure's fields.
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import ctypes, sys\n\
        sys.path.insert(0, sys.argv[1])\n\
        from otlpflow import _ffi\n\
        S = _ffi.{py_name}\n\
        for name, ty in S._fields_:\n\
        \x20   n = getattr(ty, '_length_', 1)\n\
        \x20   print(name, getattr(S, name).offset, n)\n\
        print('sizeof', ctypes.sizeof(S), 1)\n"
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .arg(root.join("bindings/python"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py_layout = String::from_utf8(out.stdout).unwrap();
    // Array lengths in the header are named constants: the C probe printed
    // their values.
    assert_eq!(
        py_layout.trim(),
        c_layout.trim(),
        "Python's {py_name} mirror differs from the C struct {c_name}"
    );
}

/// Every `otlpflow_` function in the header has argtypes and restype in the
/// Python binding: one added later without a declaration fails here.
#[test]
fn python_declares_every_exported_function() {
    let root = common::root();
    let header = std::fs::read_to_string(root.join("include/otlpflow.h")).unwrap();
    // Every identifier directly followed by `(` is a function (the header
    // has no function-like macros starting with otlpflow_).
    let mut functions: Vec<&str> = header
        .match_indices('(')
        .filter_map(|(i, _)| {
            let before = &header[..i];
            let start = before
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |j| j + 1);
            Some(&header[start..i]).filter(|w| w.starts_with("otlpflow_"))
        })
        .collect();
    functions.sort();
    functions.dedup();
    assert!(functions.len() > 30, "{functions:?}");
    let ffi_py = std::fs::read_to_string(root.join("bindings/python/otlpflow/_ffi.py")).unwrap();
    let missing: Vec<_> = functions
        .iter()
        .filter(|f| !ffi_py.contains(&format!("\"{f}\":")))
        .collect();
    assert!(
        missing.is_empty(),
        "functions without a ctypes declaration in _ffi.py: {missing:?}"
    );
}

/// Spans from a Python span template, and logs and points with a Python
/// attribute set, reach the receiver with the template's name, kind and
/// static attributes before their own (decoded by prost on the receiving
/// side).
#[test]
fn python_templates_and_attribute_sets_arrive_whole() {
    let root = common::root();
    let lib = common::lib_dir().join("libotlpflow_ffi.so");
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        ..SinkOptions::default()
    })
    .unwrap();
    let script = r#"
import sys
import otlpflow
p = otlpflow.Pipeline(endpoint=sys.argv[1], from_env=False, policy="block", max_wait=10.0,
                      shards=1, workers=1, linger=0.005, batch_spans=64)
t = p.span_template("GET /items/{id}", {"http.request.method": "GET", "http.response.status_code": 200,
                                        "tags": ["a", "b"]}, kind="server")
for i in range(300):
    with t.span({"app.item_id": i}) as s:
        s.add_event("cache.miss", {"cache.key": i})
    assert s.name == "GET /items/{id}", s.name
    assert s.span_id and s.trace_id
regions = p.attribute_set({"region": "eu-west-1", "zone": 3})
for i in range(5):
    assert p.record_log("served", attributes={"n": i}, attribute_set=regions)
    assert p.record_metric_point("queue.depth", i, attributes={"n": i}, attribute_set=regions)
st = p.shutdown()
p.close()
print("exported", st["exported"], "dropped", sum(v for k, v in st.items() if k.startswith("dropped")))
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(sink.endpoint())
        .env("OTLPFLOW_LIBRARY", &lib)
        .env("PYTHONPATH", root.join("bindings/python"))
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("exported 310 dropped 0"),
        "{stdout}\n{stderr}"
    );
    let keys = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| -> Vec<String> {
        kvs.iter().map(|kv| kv.key.clone()).collect()
    };
    let spans: Vec<_> = sink
        .take_requests()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    assert_eq!(spans.len(), 300);
    for s in &spans {
        assert_eq!(s.name, "GET /items/{id}");
        assert_eq!(s.kind, 2, "server");
        assert_eq!(
            keys(&s.attributes),
            [
                "http.request.method",
                "http.response.status_code",
                "tags",
                "app.item_id"
            ]
        );
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.trace_id.len(), 16);
    }
    let logs: Vec<_> = sink
        .take_log_requests()
        .into_iter()
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    assert_eq!(logs.len(), 5);
    assert!(logs
        .iter()
        .all(|l| keys(&l.attributes) == ["region", "zone", "n"]));
    let metrics: Vec<_> = sink
        .take_metric_requests()
        .into_iter()
        .flat_map(|r| r.resource_metrics)
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .collect();
    let points: usize = metrics
        .iter()
        .map(|m| match &m.data {
            Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) => {
                for p in &g.data_points {
                    assert_eq!(keys(&p.attributes), ["region", "zone", "n"]);
                }
                g.data_points.len()
            }
            other => panic!("a gauge, not {other:?}"),
        })
        .sum();
    assert_eq!(points, 5);
}
