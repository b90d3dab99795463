//! Compiles this crate, and only this crate, with `cfg(loom)`, so that the
//! real source files it includes switch to loom's atomics while tokio and
//! the other dependencies are built as usual.
fn main() {
    println!("cargo:rustc-check-cfg=cfg(loom)");
    println!("cargo:rustc-cfg=loom");
}
