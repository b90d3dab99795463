//! The Python package installs as a wheel that carries the engine: a fresh
//! virtualenv, `pip install ./bindings/python` (which runs cargo and puts
//! the library inside the package), then a script run from a directory
//! outside the checkout, with no OTLPFLOW_LIBRARY, delivers spans to the
//! embedded receiver.
//!
//! pip needs `setuptools` and `wheel` to build; the test installs them from
//! a local folder of wheels (OTLPFLOW_WHEELHOUSE, which `.ci/run` fills
//! with `pip download`) so that it makes no network traffic. Without that
//! folder it says so and does nothing.

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
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(root.join("bindings/python/build"));
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
