//! Shared by the C and Python test harnesses: builds the C library.
//!
//! `cargo test` links its test binaries against the rlib and does not make
//! the `cdylib` and `staticlib` that C, C++ and Python load, so the harness
//! asks cargo for them (same profile, same target folder) before using them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// target/<profile>, holding a fresh libotlpflow_ffi.{so,a}.
pub fn lib_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test>-<hash>
            let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let profile = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("debug")
                .to_owned();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "otlpflow-ffi"])
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
            if profile == "release" {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build -p otlpflow-ffi");
            assert!(status.success(), "cargo build -p otlpflow-ffi failed");
            assert!(
                dir.join("libotlpflow_ffi.so").exists() && dir.join("libotlpflow_ffi.a").exists()
            );
            // The library's SONAME is libotlpflow.so.0 (ffi/build.rs): a
            // program linked against it looks for that name at run time.
            let soname = dir.join("libotlpflow.so.0");
            let _ = std::fs::remove_file(&soname);
            std::os::unix::fs::symlink("libotlpflow_ffi.so", &soname).unwrap();
            dir
        })
        .clone()
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
