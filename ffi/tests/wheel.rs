//! The Python package installs as a wheel that carries the engine: a fresh
//! virtualenv, `pip install ./bindings/python` (which runs cargo and puts
//! the library inside the package), then a script run from a directory
//! outside the checkout, with no OTLPFLOW_LIBRARY, delivers spans to the
//! embedded receiver.
//!
//! Then, in the same virtualenv, the OpenTelemetry SDK's zero-code set-up:
//! `opentelemetry-instrument python app.py`, with the app written against
//! the OpenTelemetry API alone and `OTEL_{TRACES,METRICS,LOGS}_EXPORTER=
//! otlpflow`, exports through otlpflow (found by the entry points the
//! wheel registers).
//!
//! pip needs `setuptools` and `wheel` to build, and the second part
//! `opentelemetry-distro` (with the SDK and `opentelemetry-instrument`);
//! the test installs them from a local folder of wheels
//! (OTLPFLOW_WHEELHOUSE, which `.ci/run` fills with `pip download`) so
//! that it makes no network traffic. Without that folder it says so and
//! does nothing.

mod common;

use std::path::Path;
use std::process::Command;

use otlpflow::sink::{Sink, SinkOptions, Verify};

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pip_install_delivers_spans_from_outside_the_checkout() {
    let Some(wheelhouse) = std::env::var_os("OTLPFLOW_WHEELHOUSE") else {
        eprintln!("OTLPFLOW_WHEELHOUSE is not set (.ci/run sets it): wheel test skipped");
        return;
    };
    let root = common::root();
    // The library cargo test just built is reused: the same target folder
    // and the dev profile make pip's cargo build a no-op here.
    let target = common::lib_dir();
    let target_dir = target.parent().unwrap();
    let tmp = std::env::temp_dir().join(format!("otlpflow-wheel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let venv = tmp.join("venv");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    let pip = venv.join("bin/pip");
    run(
        Command::new(&pip)
            .args(["install", "-q", "--no-index", "--find-links"])
            .arg(&wheelhouse)
            .args(["setuptools", "wheel"]),
        "installing setuptools and wheel from the wheelhouse",
    );
    run(
        Command::new(&pip)
            .args(["install", "-q", "--no-index", "--no-build-isolation"])
            .arg(root.join("bindings/python"))
            .env("OTLPFLOW_CARGO_PROFILE", "dev")
            .env("CARGO_TARGET_DIR", target_dir),
        "pip install ./bindings/python",
    );
    let installed = venv.join("lib");
    let has_library = walk(&installed).any(|p| p.ends_with("otlpflow/libotlpflow_ffi.so"));
    assert!(has_library, "the wheel did not carry libotlpflow_ffi.so");

    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap();
    let script = "import sys, otlpflow\n\
        assert 'site-packages' in otlpflow.__file__, otlpflow.__file__\n\
        with otlpflow.Pipeline(endpoint=sys.argv[1], service_name='wheel', policy='block', from_env=False) as p:\n\
        \x20   for i in range(500):\n\
        \x20       with p.span('from the wheel', attributes={'i': i}):\n\
        \x20           pass\n\
        \x20   stats = p.shutdown()\n\
        print(stats['exported'])\n";
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(sink.endpoint())
        .current_dir(&tmp)
        .env_remove("OTLPFLOW_LIBRARY")
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "500");
    assert_eq!(sink.stop().spans, 500);

    zero_code(&venv, Path::new(&wheelhouse), &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(root.join("bindings/python/build"));
}

/// An app that knows only the OpenTelemetry API, run under
/// `opentelemetry-instrument` with otlpflow named as every signal's
/// exporter: its spans, its counter and its log record arrive, with the
/// SDK's resource and the app's scope.
fn zero_code(venv: &Path, wheelhouse: &Path, tmp: &Path) {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--no-index", "--find-links"])
            .arg(wheelhouse)
            .arg("opentelemetry-distro"),
        "installing opentelemetry-distro from the wheelhouse (.ci/run downloads it)",
    );
    let app = tmp.join("app.py");
    std::fs::write(
        &app,
        "import logging\n\
         from opentelemetry import trace, metrics\n\
         tracer = trace.get_tracer('shop.checkout', '1.2')\n\
         orders = metrics.get_meter('shop.checkout').create_counter('orders', unit='{order}')\n\
         for i in range(300):\n\
         \x20   with tracer.start_as_current_span('checkout', attributes={'order.id': i}):\n\
         \x20       with tracer.start_as_current_span('charge card'):\n\
         \x20           pass\n\
         \x20       orders.add(1, {'region': 'eu'})\n\
         logging.getLogger('shop').warning('stock low for %s', 'A-17')\n",
    )
    .unwrap();
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        ..SinkOptions::default()
    })
    .unwrap();
    instrumented(
        venv,
        &app,
        &sink,
        &[
            ("OTEL_SERVICE_NAME", "shop"),
            ("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true"),
        ],
    );
    let text = |v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .and_then(|v| v.value.as_ref())
    {
        Some(Any::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    let mut spans = 0;
    for req in sink.take_requests() {
        for rs in req.resource_spans {
            let resource = rs.resource.unwrap_or_default();
            let attr = |k: &str| {
                let kv = resource.attributes.iter().find(|kv| kv.key == k);
                kv.map(|kv| text(kv.value.as_ref()))
            };
            // The SDK's resource (it read OTEL_SERVICE_NAME too), not only
            // the environment's.
            assert_eq!(attr("service.name").as_deref(), Some("shop"));
            assert_eq!(attr("telemetry.sdk.language").as_deref(), Some("python"));
            assert!(attr("telemetry.auto.version").is_some(), "{resource:?}");
            for ss in rs.scope_spans {
                let scope = ss.scope.unwrap_or_default();
                assert_eq!(
                    (scope.name.as_str(), scope.version.as_str()),
                    ("shop.checkout", "1.2")
                );
                spans += ss.spans.len();
            }
        }
    }
    assert_eq!(spans, 600);
    let mut orders = 0;
    for req in sink.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                orders += sm.metrics.iter().filter(|m| m.name == "orders").count();
            }
        }
    }
    assert!(
        orders >= 1,
        "the counter arrives (at least the final collection)"
    );
    let mut logs = Vec::new();
    for req in sink.take_log_requests() {
        for rl in req.resource_logs {
            for sl in rl.scope_logs {
                logs.extend(sl.log_records.into_iter().map(|l| text(l.body.as_ref())));
            }
        }
    }
    assert_eq!(logs, ["stock low for A-17"]);

    // OTEL_SDK_DISABLED=true: the SDK records nothing, and otlpflow's
    // exporters, made all the same, start no pipeline (no threads, no
    // connection) for the nothing they are given.
    let probe = tmp.join("disabled.py");
    std::fs::write(
        &probe,
        "import threading\n\
         from opentelemetry import trace\n\
         with trace.get_tracer('shop').start_as_current_span('not recorded'):\n\
         \x20   pass\n\
         print(sorted(t.name for t in threading.enumerate() if t.name.startswith('otlpflow')))\n",
    )
    .unwrap();
    let out = instrumented(venv, &probe, &sink, &[("OTEL_SDK_DISABLED", "true")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert_eq!(sink.take_requests().len(), 0);
}

/// `app` run by `opentelemetry-instrument` from the virtualenv, in the
/// app's folder, with otlpflow named as every signal's exporter, the
/// receiver `sink`, and `env`; its output, after checking it succeeded.
fn instrumented(
    venv: &Path,
    app: &Path,
    sink: &Sink,
    env: &[(&str, &str)],
) -> std::process::Output {
    let out = Command::new(venv.join("bin/opentelemetry-instrument"))
        .arg(venv.join("bin/python"))
        .arg(app)
        .current_dir(app.parent().unwrap())
        .env_remove("OTLPFLOW_LIBRARY")
        .env_remove("PYTHONPATH")
        .env("OTEL_TRACES_EXPORTER", "otlpflow")
        .env("OTEL_METRICS_EXPORTER", "otlpflow")
        .env("OTEL_LOGS_EXPORTER", "otlpflow")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "opentelemetry-instrument: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir`.
fn walk(dir: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.into_iter()
}
