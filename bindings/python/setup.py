"""Builds the wheel with the engine inside: `pip install ./bindings/python`
(or `python -m build --wheel` there) runs `cargo build -p otlpflow-ffi` in
the checkout and puts the shared library into the `otlpflow` package, so
that `import otlpflow` finds it from any directory.

The bindings are ctypes, not a CPython extension: the wheel is tagged
`py3-none-<platform>` and serves every Python 3 on that platform.

Environment: OTLPFLOW_CARGO_PROFILE (`release`, the default, or `dev` for a
quick debug build) and CARGO_TARGET_DIR (cargo's own) choose what is built
and where.
"""

import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 has it; before, the `wheel` package does.
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LIBRARY = {"darwin": "libotlpflow_ffi.dylib"}.get(sys.platform, "libotlpflow_ffi.so")


class BuildWithEngine(build_py):
    """build_py, then the Rust library into the package."""

    def run(self):
        super().run()
        profile = os.environ.get("OTLPFLOW_CARGO_PROFILE", "release")
        if profile not in ("release", "dev"):
            raise SystemExit("OTLPFLOW_CARGO_PROFILE must be release or dev, not %r" % profile)
        manifest = os.path.join(ROOT, "Cargo.toml")
        if not os.path.exists(os.path.join(ROOT, "ffi", "Cargo.toml")):
            raise SystemExit("otlpflow: build from a checkout of the repository (%s has no ffi/)" % ROOT)
        cmd = ["cargo", "build", "--manifest-path", manifest, "-p", "otlpflow-ffi", "--profile", profile]
        subprocess.check_call(cmd, cwd=ROOT)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        built = os.path.join(target, "release" if profile == "release" else "debug", LIBRARY)
        dest = os.path.join(self.build_lib, "otlpflow")
        os.makedirs(dest, exist_ok=True)
        shutil.copy2(built, os.path.join(dest, LIBRARY))


class PlatformWheel(bdist_wheel):
    """A wheel for this platform and any Python 3 (ctypes needs no ABI)."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"build_py": BuildWithEngine, "bdist_wheel": PlatformWheel})
