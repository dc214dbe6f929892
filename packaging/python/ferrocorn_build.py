"""PEP 517 build backend for ferrocorn: maturin, plus the master binary.

A ferrocorn wheel holds two builds of the same crate: the native module
``ferrocorn._native`` (the cdylib, which maturin builds and tags) and the
``ferrocorn`` command, the master, a native executable that pip installs
into the environment's ``bin/``. maturin builds one of the two per wheel
(its issue #368), so this backend builds the master with cargo first and
puts it where ``[tool.maturin] data`` points (``target/wheel-data/scripts``),
then lets maturin do everything else. It is used by ``make wheel`` and by
``pip install`` of the sdist alike, so both build the same wheel.
"""

import glob
import os
import shutil
import subprocess
import sys

import maturin
from maturin import *  # noqa: F401,F403 (the other PEP 517 hooks, unchanged)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPTS = os.path.join(ROOT, "target", "wheel-data", "scripts")
PACKAGE = os.path.join(ROOT, "python", "ferrocorn")

# maturin checks that the data directory exists in every hook, the
# metadata ones included, before any wheel is built.
os.makedirs(SCRIPTS, exist_ok=True)


def build_master():
    """``cargo build --release --bin ferrocorn`` into the wheel's scripts."""
    cargo = os.environ.get("CARGO", "cargo")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    cmd = [cargo, "build", "--release", "--locked", "--bin", "ferrocorn"]
    sys.stderr.write("ferrocorn_build: %s\n" % " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)
    shutil.copy2(os.path.join(target, "release", "ferrocorn"), os.path.join(SCRIPTS, "ferrocorn"))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    build_master()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    build_master()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def stage_native_modules():
    """Put target/native/_native.SOABI.so (make native-modules) into the
    package, beside the stable-ABI module maturin adds: `import` and the
    master both prefer the one built for the running interpreter. Only
    `make wheel` does this; a build from the sdist has the stable-ABI
    module alone (it serves every CPython 3.9+)."""
    for old in glob.glob(os.path.join(PACKAGE, "_native.cpython-*.so")):
        os.remove(old)
    for module in glob.glob(os.path.join(ROOT, "target", "native", "_native.cpython-*.so")):
        shutil.copy2(module, PACKAGE)


if __name__ == "__main__":
    # `make wheel`: the master (and the version-specific modules) first,
    # then `maturin build`, which tags the wheel manylinux (a PEP 517 build
    # tags it for this machine only).
    build_master()
    if "--with-native-modules" in sys.argv[1:]:
        stage_native_modules()
