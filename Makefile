# ferrocorn's developer and CI entry points.
#
#   make test         the one test command: lint + cargo test + conformance
#   make build        debug build (target/debug/ferrocorn)
#   make lint         cargo fmt --check; cargo clippy --all-targets -D warnings
#   make docs         docs/settings.md and the man page's OPTIONS, from the settings table
#   make venv         .venv/ (Debian's python3.11 + examples/ and tests/requirements.txt)
#   make conformance  Gunicorn's request corpus against a live server
#   make serve        examples/hello.py on http://127.0.0.1:8000
#   make native-modules  target/native/_native.SOABI.so for each CPython at hand
#   make wheel        target/wheels/ferrocorn-VERSION-cp39-abi3-manylinux_*.whl
#   make sdist        target/wheels/ferrocorn-VERSION.tar.gz
#   make wheel-test   the wheel in a fresh venv of every CPython 3.9+ here
#   make sdist-test   pip install of the sdist (a source build) in a fresh venv
#   make fuzz-smoke   each cargo fuzz target for a minute (make fuzz: an hour)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO ?= cargo
VENV := .venv
VENV_PYTHON := /usr/bin/python3.11
# maturin and auditwheel, for the wheel (PyPI, pinned).
TOOLS := target/tools-venv
MATURIN_VERSION ?= 1.16.0
AUDITWHEEL_VERSION ?= 6.8.2

.PHONY: all build test lint docs cargo-test venv conformance serve clean-venv lifecycle-bench \
	boot-bench tools native-modules wheel sdist wheel-test sdist-test

all: build

build:
	$(CARGO) build

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The settings' reference is generated from src/config/table.rs; a unit test
# fails when the committed files are stale, and this rewrites them.
docs:
	FERROCORN_BLESS=1 $(CARGO) test --lib config::docs

# `cargo build` first: `cargo test` builds the crate only as the rlib its
# tests and the master link, not the cdylib (the native module the workers
# load, target/debug/libferrocorn.so), which would then be of older sources.
cargo-test: venv
	$(CARGO) build
	$(CARGO) test --no-fail-fast

# Runs all three parts even when one fails (a format nit must not hide a
# failing test), then fails if any did.
test: venv
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(MAKE) --no-print-directory cargo-test || status=1; \
	$(MAKE) --no-print-directory conformance || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see above)" >&2; fi; \
	exit $$status

# The virtualenv the Flask integration test serves from. The stamp file
# re-runs pip when examples/requirements.txt changes.
venv: $(VENV)/.installed

$(VENV)/.installed: examples/requirements.txt tests/requirements.txt tests/requirements-app.txt
	test -x $(VENV)/bin/python || $(VENV_PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -r examples/requirements.txt -r tests/requirements.txt
	touch $@

clean-venv:
	rm -rf $(VENV)

conformance: build
	scripts/conformance.sh

serve: build
	target/debug/ferrocorn --chdir examples -b 127.0.0.1:8000 hello:app

tools: $(TOOLS)/.installed

$(TOOLS)/.installed: Makefile
	test -x $(TOOLS)/bin/python || $(VENV_PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet maturin==$(MATURIN_VERSION) auditwheel==$(AUDITWHEEL_VERSION)
	touch $@

# A module built for each CPython at hand, faster than the stable-ABI one
# (see the script); the packages and the wheel carry them.
native-modules:
	scripts/build-native-modules.sh

# The master and the version-specific modules first (maturin builds the
# stable-ABI module only), then maturin, which tags the wheel with the
# oldest manylinux its symbols allow and fails if it is not compliant;
# scripts/wheel-check.sh then holds every binary in it to the same tag.
wheel: tools native-modules
	rm -f target/wheels/ferrocorn-*.whl
	PATH=$(CURDIR)/$(TOOLS)/bin:$$PATH $(TOOLS)/bin/python packaging/python/ferrocorn_build.py --with-native-modules
	$(TOOLS)/bin/maturin build --release --locked --auditwheel check --out target/wheels
	scripts/wheel-check.sh target/wheels/ferrocorn-*.whl

sdist: tools
	rm -f target/wheels/ferrocorn-*.tar.gz
	$(TOOLS)/bin/maturin sdist --out target/wheels

# Every CPython 3.9+ on the machine (Debian's, pyenv's): a fresh venv, the
# wheel and Flask from PyPI, then the integration suite and Gunicorn's
# corpus with that venv's bin/ferrocorn (tests/wheel/run.sh).
wheel-test: wheel
	tests/wheel/run.sh target/wheels/ferrocorn-*.whl

# pip install of the sdist, as a user with a Rust toolchain does it (pip's
# isolated build fetches maturin from PyPI and builds both products), into
# a fresh venv of Debian's Python; then the installed command serves hello.
sdist-test: sdist
	tests/wheel/sdist-test.sh target/wheels/ferrocorn-*.tar.gz

# Packages (.deb, .rpm) and the tests under a real systemd live in their own
# fragments: packaging/packaging.mk (make deb, make rpm),
# tests/systemd/systemd.mk (make systemd-test) and
# tests/deployments/deployments.mk (make deployments-test), and the
# fuzzers in fuzz/fuzz.mk (make fuzz-smoke, make fuzz).
-include packaging/packaging.mk
-include tests/systemd/systemd.mk
-include tests/deployments/deployments.mk
-include fuzz/fuzz.mk

# The master's life cycle under load (20 HUPs, respawn latency): not part of
# `make test`; its figures go into the closing notes.
lifecycle-bench:
	$(CARGO) build --release
	python3 scripts/lifecycle-bench.py

# A worker's start-up cost (cold start, respawn), hello and Flask; needs
# `make venv`. BASELINE=path/to/older/ferrocorn measures one beside it.
boot-bench: venv
	$(CARGO) build --release
	python3 scripts/boot-bench.py $(if $(BASELINE),--baseline $(BASELINE))
