#!/usr/bin/env bash
# Builds the C library and installs it under PREFIX (default /usr/local):
# the shared library as libotlpflow.so.<version> with the libotlpflow.so.<major>
# (its SONAME) and libotlpflow.so links, the static libotlpflow.a, the C and
# C++ headers, a pkg-config file and a CMake package.
#   ffi/install.sh [PREFIX]
#   cc app.c $(pkg-config --cflags --libs otlpflow)
#   find_package(otlpflow) ... target_link_libraries(app PRIVATE otlpflow::otlpflow)
# OTLPFLOW_PROFILE=dev installs a debug build (the tests use it: no release
# build needed).
set -euo pipefail
prefix=${1:-/usr/local}
profile=${OTLPFLOW_PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --quiet --profile "$profile" -p otlpflow-ffi
target=${CARGO_TARGET_DIR:-$root/target}/$([ "$profile" = dev ] && echo debug || echo "$profile")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
install -d "$prefix/lib" "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/otlpflow"
install -m 0755 "$target/libotlpflow_ffi.so" "$prefix/lib/libotlpflow.so.$version"
ln -sf "libotlpflow.so.$version" "$prefix/lib/libotlpflow.so.$major"
ln -sf "libotlpflow.so.$major" "$prefix/lib/libotlpflow.so"
install -m 0644 "$target/libotlpflow_ffi.a" "$prefix/lib/libotlpflow.a"
install -m 0644 include/otlpflow.h bindings/cpp/otlpflow.hpp "$prefix/include/"
subst() { sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" -e "s|@MAJOR@|$major|g" "$1"; }
subst ffi/otlpflow.pc.in > "$prefix/lib/pkgconfig/otlpflow.pc"
subst ffi/cmake/otlpflowConfig.cmake.in > "$prefix/lib/cmake/otlpflow/otlpflowConfig.cmake"
subst ffi/cmake/otlpflowConfigVersion.cmake.in > "$prefix/lib/cmake/otlpflow/otlpflowConfigVersion.cmake"
echo "installed otlpflow $version under $prefix"
