#!/usr/bin/env bash
# The wheel on every CPython 3.9+ of this machine (Debian's python3.11 and
# pyenv's builds): for each, a fresh venv with `pip install WHEEL` and the
# tests' packages (Flask, PasteDeploy...) from PyPI, then, with that venv's bin/ferrocorn (so the workers run in the
# venv's own interpreter):
#   - the whole integration suite (FERROCORN_TEST_BIN, FERROCORN_TEST_VENV;
#     FERROCORN_TEST_NATIVE=specific: each worker must load the module the
#     wheel carries for its interpreter's SOABI);
#   - Gunicorn's request corpus (scripts/conformance.sh, FERROCORN_BIN).
#
#   tests/wheel/run.sh target/wheels/ferrocorn-*.whl    (make wheel-test)
#
# WHEEL_TEST_PYTHONS="/usr/bin/python3.11 ..." picks the interpreters.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
wheel=$(realpath "${1:?usage: $0 WHEEL}")
work=$root/target/wheel-test
mkdir -p "$work"

if [[ -n ${WHEEL_TEST_PYTHONS:-} ]]; then
    read -ra pythons <<<"$WHEEL_TEST_PYTHONS"
else
    pythons=()
    [[ -x /usr/bin/python3.11 ]] && pythons+=(/usr/bin/python3.11)
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3; do
        [[ -x $p ]] || continue
        minor=$("$p" -c 'import sys; print(sys.version_info[1])')
        ((minor >= 9)) && pythons+=("$p")
    done
fi
((${#pythons[@]})) || { echo "wheel-test: no CPython 3.9+ found" >&2; exit 1; }

# The integration tests are built once, against the build tree; they start
# whichever ferrocorn FERROCORN_TEST_BIN names.
(cd "$root" && cargo test --no-run --test integration >/dev/null)

failed=()
for python in "${pythons[@]}"; do
    version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    venv=$work/py$version
    echo "=== wheel-test: CPython $version ($python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-cache-dir "$wheel" -r "$root/examples/requirements.txt" \
        -r "$root/tests/requirements-app.txt"
    ok=1
    (cd "$root" && FERROCORN_TEST_BIN=$venv/bin/ferrocorn FERROCORN_TEST_VENV=$venv FERROCORN_TEST_NATIVE=specific \
        cargo test --test integration --no-fail-fast -q) || ok=0
    FERROCORN_BIN=$venv/bin/ferrocorn "$root/scripts/conformance.sh" || ok=0
    ((ok)) || failed+=("$version")
done
if ((${#failed[@]})); then
    echo "wheel-test: FAILED on CPython ${failed[*]}" >&2
    exit 1
fi
echo "wheel-test: passed on ${#pythons[@]} interpreter(s)"
