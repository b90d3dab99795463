//! The shared library's SONAME: `libotlpflow.so.<major>` on Linux, so that a
//! program linked against it keeps loading compatible releases and refuses
//! incompatible ones (the install script names the file after it).

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libotlpflow.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
