//! Builds the C tests in `tests/c/` (and the C++ wrapper's test) with the system C compiler against the
//! shared and the static library, runs each mode against the embedded
//! receiver under AddressSanitizer + UndefinedBehaviorSanitizer and under
//! valgrind, and checks the receiver counted what the C program says it
//! delivered.

use std::path::{Path, PathBuf};

use std::process::Command;

use otlpflow::sink::{Sink, SinkOptions, Verify};

mod common;

use common::{lib_dir, root};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Compiles the test program; `link` is "shared" or "static".
fn compile(link: &str, sanitize: bool) -> PathBuf {
    compile_program("test_abi", link, sanitize)
}

/// Compiles `ffi/tests/c/NAME.c`; `link` is "shared" or "static".
fn compile_program(name: &str, link: &str, sanitize: bool) -> PathBuf {
    let dir = lib_dir();
    let out = dir.join(format!(
        "c_{name}_{link}{}",
        if sanitize { "_asan" } else { "" }
    ));
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.args([
        "-std=c11",
        "-g",
        "-O1",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fno-omit-frame-pointer",
    ])
    .arg("-I")
    .arg(root().join("include"))
    .arg(root().join(format!("ffi/tests/c/{name}.c")))
    .arg("-o")
    .arg(&out);
    if sanitize {
        cc.arg("-fsanitize=address,undefined")
            .arg("-fno-sanitize-recover=undefined");
    }
    match link {
        "shared" => {
            cc.arg(format!("-L{}", dir.display()))
                .arg("-lotlpflow_ffi")
                .arg(format!("-Wl,-rpath,{}", dir.display()));
        }
        _ => {
            cc.arg(dir.join("libotlpflow_ffi.a"));
        }
    }
    cc.args(["-lpthread", "-ldl", "-lm"]);
    let status = cc.status().expect("running the C compiler");
    assert!(status.success(), "compiling the C test ({link}) failed");
    out
}

/// Runs one mode against a fresh receiver and checks its count.
fn run(program: &Path, wrapper: Option<&[&str]>, mode: &str, scale: u32) {
    run_args(program, wrapper, &[mode, &scale.to_string()], mode)
}

/// Runs `program ENDPOINT args...` against a fresh receiver and checks that
/// it counted the `expect_received=N` the program printed.
fn run_args(program: &Path, wrapper: Option<&[&str]>, args: &[&str], mode: &str) {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .expect("sink");
    let mut cmd = match wrapper {
        Some(w) => {
            let mut c = Command::new(w[0]);
            c.args(&w[1..]).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.arg(sink.endpoint()).args(args);
    // Rust's globals are reachable at exit, not leaked; anything leaked
    // from C or through the ABI is reported.
    cmd.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:abort_on_error=0:halt_on_error=1",
    )
    .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    let out = cmd.output().expect("running the C test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {mode} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        out.status
    );
    let expect: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("expect_received="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no expect_received line in:\n{stdout}\n{stderr}"));
    let counts = sink.stop();
    assert_eq!(counts.spans, expect, "{mode}: receiver count");
    for (key, got) in [
        ("expect_logs=", counts.logs),
        ("expect_points=", counts.metric_points),
    ] {
        let want = stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map_or(0, |v| v.trim().parse().unwrap_or(u64::MAX));
        assert_eq!(got, want, "{mode}: receiver {key}");
    }
    assert_eq!(counts.errors, 0, "{mode}: receiver saw bad requests");
}

const MODES: [&str; 6] = [
    "basic",
    "threads",
    "bad_input",
    "fork",
    "signals",
    "handles",
];

#[test]
fn c_tests_under_asan_and_ubsan_shared_and_static() {
    for link in ["shared", "static"] {
        let program = compile(link, true);
        for mode in MODES {
            run(&program, None, mode, 1);
        }
    }
}

/// valgrind as the C tests run under it: memory errors and definite leaks
/// fail the run (the last flag only matters to the fork mode).
const VALGRIND: [&str; 6] = [
    "valgrind",
    "-q",
    "--error-exitcode=9",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite",
    "--child-silent-after-fork=yes",
];

#[test]
fn c_templates_and_attribute_sets_under_asan_and_valgrind() {
    for link in ["shared", "static"] {
        let program = compile_program("test_templates", link, true);
        run(&program, None, "templates", 1);
    }
    let program = compile_program("test_templates", "shared", false);
    run(&program, Some(&VALGRIND), "templates", 10);
}

#[test]
fn c_tests_under_valgrind() {
    if !have("valgrind") {
        // valgrind is on every machine of this project's kind and .ci/run
        // installs it where missing; say so loudly if it is not.
        panic!("valgrind not found: install it (apt-get install valgrind)");
    }
    let vg = VALGRIND;
    for (link, mode) in ["shared", "static"]
        .into_iter()
        .flat_map(|l| MODES.map(|m| (l, m)))
    {
        let program = compile(link, false);
        if mode == "fork" {
            // In a fork child, memory that only the parent's other threads
            // pointed to (their thread-locals, the runtime state on their
            // stacks) looks "definitely lost" to valgrind, because those
            // threads do not exist there. That is fork's nature, not a leak:
            // check the fork mode for memory errors only (AddressSanitizer's
            // leak checker covers it above).
            let no_leaks: Vec<&str> = vg
                .iter()
                .map(|a| {
                    if a.starts_with("--leak-check") {
                        "--leak-check=no"
                    } else {
                        a
                    }
                })
                .collect();
            run(&program, Some(&no_leaks), mode, 10);
        } else {
            run(&program, Some(&vg), mode, 10);
        }
    }
}

#[test]
fn cpp_wrapper_under_asan_and_ubsan() {
    let dir = lib_dir();
    let out = dir.join("cpp_test_asan");
    let status = Command::new(std::env::var("CXX").unwrap_or_else(|_| "c++".into()))
        .args([
            "-std=c++17",
            "-g",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pthread",
        ])
        .args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("bindings/cpp/test.cpp"))
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", dir.display()))
        .arg("-lotlpflow_ffi")
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .status()
        .unwrap();
    assert!(status.success(), "compiling the C++ test failed");
    run_args(&out, None, &[], "cpp");
}

#[test]
fn examples_build_and_the_install_script_writes_a_working_pkg_config() {
    let dir = lib_dir();
    for example in ["record", "bench_record"] {
        let out = dir.join(format!("example_{example}"));
        let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"])
            .arg("-I")
            .arg(root().join("include"))
            .arg(root().join(format!("ffi/examples/{example}.c")))
            .arg("-o")
            .arg(&out)
            .arg(format!("-L{}", dir.display()))
            .arg("-lotlpflow_ffi")
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .status()
            .unwrap();
        assert!(status.success(), "example {example} does not build");
    }
    // The record example runs against a receiver and delivers its spans.
    let sink = Sink::start(SinkOptions::default()).unwrap();
    let out = Command::new(dir.join("example_record"))
        .arg(sink.endpoint())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sink.stop().spans, 1000);
}

/// `ffi/install.sh` into a fresh prefix (a debug build), then the record
/// example built the two ways a C project would: with pkg-config, and with
/// CMake's `find_package(otlpflow)` (shared and static imported targets).
/// Each program delivers its 1000 spans; the installed library carries the
/// versioned SONAME.
#[test]
fn installed_library_builds_with_pkg_config_and_cmake() {
    if !have("pkg-config") || !have("cmake") {
        eprintln!("pkg-config or cmake missing (.ci/run installs them): install test skipped");
        return;
    }
    let prefix = std::env::temp_dir().join(format!("otlpflow-prefix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let target_dir = lib_dir().parent().unwrap().to_path_buf();
    let status = Command::new("bash")
        .arg(root().join("ffi/install.sh"))
        .arg(&prefix)
        .env("OTLPFLOW_PROFILE", "dev")
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .unwrap();
    assert!(status.success(), "install.sh failed");
    let lib = prefix.join("lib");
    for f in [
        "libotlpflow.so",
        "libotlpflow.so.0",
        "libotlpflow.so.0.1.0",
        "libotlpflow.a",
    ] {
        assert!(lib.join(f).exists(), "{f} not installed");
    }
    let readelf = Command::new("readelf")
        .args(["-d"])
        .arg(lib.join("libotlpflow.so.0.1.0"))
        .output();
    if let Ok(out) = readelf {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("[libotlpflow.so.0]"), "SONAME:\n{text}");
    }
    let mut programs = Vec::new();
    // pkg-config.
    let pc = Command::new("pkg-config")
        .args(["--cflags", "--libs", "otlpflow"])
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
        .output()
        .unwrap();
    assert!(pc.status.success());
    let flags = String::from_utf8(pc.stdout).unwrap();
    let exe = prefix.join("record_pkgconfig");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Werror"])
        .arg(root().join("ffi/examples/record.c"))
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "building with pkg-config");
    programs.push(exe);
    // CMake.
    let build = prefix.join("cmake-build");
    let status = Command::new("cmake")
        .arg("-S")
        .arg(root().join("ffi/examples"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .arg("-DCMAKE_BUILD_RPATH_USE_ORIGIN=OFF")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cmake configure (find_package(otlpflow))");
    let status = Command::new("cmake")
        .arg("--build")
        .arg(&build)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cmake build");
    programs.push(build.join("record"));
    programs.push(build.join("record_static"));
    for program in programs {
        let sink = Sink::start(SinkOptions::default()).unwrap();
        let out = Command::new(&program)
            .arg(sink.endpoint())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sink.stop().spans, 1000, "{}", program.display());
    }
    let _ = std::fs::remove_dir_all(&prefix);
}
