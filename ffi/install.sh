#!/usr/bin/env bash
# Builds the C library in release mode and installs it with its header and a
# pkg-config file under PREFIX (default /usr/local):
#   ffi/install.sh [PREFIX]
#   cc app.c $(pkg-config --cflags --libs otlpflow)
set -euo pipefail
prefix=${1:-/usr/local}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p otlpflow-ffi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
install -d "$prefix/lib" "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0644 target/release/libotlpflow_ffi.so target/release/libotlpflow_ffi.a "$prefix/lib/"
install -m 0644 include/otlpflow.h bindings/cpp/otlpflow.hpp "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" ffi/otlpflow.pc.in > "$prefix/lib/pkgconfig/otlpflow.pc"
echo "installed otlpflow $version under $prefix"
