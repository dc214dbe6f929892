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

import os
import shutil
import subprocess
import sys

import maturin
from maturin import *  # noqa: F401,F403 (the other PEP 517 hooks, unchanged)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPTS = os.path.join(ROOT, "target", "wheel-data", "scripts")

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


if __name__ == "__main__":
    # `make wheel`: the master first, then `maturin build`, which tags the
    # wheel manylinux (a PEP 517 build tags it for this machine only).
    build_master()
