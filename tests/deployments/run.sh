#!/bin/bash
# The deployments people run, end to end (`make deployments-test`), in a
# throw-away Debian container with systemd as PID 1 (tests/systemd/harness),
# so the host stays clean:
#
#   1. Django 5.2 started by the guide's systemd unit (User=, PYTHONPATH,
#      DJANGO_SETTINGS_MODULE, --worker-class=gevent, IPv4 and IPv6 binds);
#   2. Flask mounted at /flasktodo by nginx, ferrocorn run by supervisor;
#   3. Zope through PasteDeploy (runwsgi, [server:main] use =
#      egg:ferrocorn#main) and through the guide's gunicornapp wrapper;
#   4. an OpenERP-style app that serves only once its gunicorn.conf.py's
#      on_starting hook initialised it;
#   5. runit, with the Gunicorn docs' /etc/sv/app/run.
#
# Host side: builds the wheel (`make wheel`; DEPLOYMENTS_NO_BUILD=1 takes
# the newest target/wheels/ferrocorn-*.whl), downloads the Python packages
# of tests/deployments/requirements.txt as wheels for the container's
# CPython (cached in target/deployments-wheels/ while the file is
# unchanged; the container has no network), and runs inside.sh in a
# container whose image has nginx-light, supervisor and runit (the
# harness's HARNESS_EXTRA_PACKAGES; built once, cached).
#
#   tests/deployments/run.sh [bookworm|trixie]...   (default both: Debian 12's
#                                                  Python 3.11, Debian 13's 3.13)
#
# DEPLOYMENTS_CHECKS="1 4" picks deployments. Prints PASS/FAIL lines and
# "N passed, N failed" per suite; logs and the journal go to
# target/deployments-test/TIMESTAMP/SUITE/.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/deployments
HARNESS=$ROOT/tests/systemd/harness/harness.sh
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(bookworm trixie)
RESULTS=${DEPLOYMENTS_RESULTS:-$ROOT/target/deployments-test/$(date +%Y%m%d-%H%M%S)}
CHECKS=${DEPLOYMENTS_CHECKS:-1 2 3 4 5}

log() { printf '[deployments-test %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn)"
for s in "${SUITES[@]}"; do
  case "$s" in bookworm|trixie) ;; *) die "unknown suite '$s' (bookworm, trixie)" ;; esac
done
mkdir -p "$RESULTS"
cd "$ROOT" || exit 2

if [ "${DEPLOYMENTS_NO_BUILD:-0}" = 1 ]; then
  log "DEPLOYMENTS_NO_BUILD=1: using the newest wheel in target/wheels"
else
  log "building the wheel: make wheel"
  make -C "$ROOT" --no-print-directory wheel >&2 || die "make wheel failed"
fi
WHEEL=$(ls -t "$ROOT"/target/wheels/ferrocorn-*.whl 2>/dev/null | head -1)
[ -n "$WHEEL" ] || die "no target/wheels/ferrocorn-*.whl (make wheel)"

# run_suite SUITE PYVER: the packages' wheels for the container's CPython,
# downloaded once per version of requirements.txt, then inside.sh.
run_suite() {
  local suite=$1 pyver=$2 out=$RESULTS/$1
  local cache=$ROOT/target/deployments-wheels/cp$pyver stage=$RESULTS/$1/stage
  local stamp; stamp=$(sha256sum "$HERE/requirements.txt" | cut -c1-16)
  if [ "$(cat "$cache/.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "downloading the packages of requirements.txt and their dependencies for CPython $pyver"
    rm -rf "$cache"; mkdir -p "$cache"
    python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$pyver" --implementation cp --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
        -d "$cache" -r "$HERE/requirements.txt" >&2 || die "pip download for Python $pyver failed"
    echo "$stamp" > "$cache/.stamp"
  fi
  rm -rf "$stage"; mkdir -p "$stage/wheels" "$stage/apps"
  cp "$WHEEL" "$cache"/*.whl "$stage/wheels/"
  cp -r "$HERE/apps/." "$stage/apps/"
  cp "$ROOT/tests/apps/guides/flasktodo.py" "$stage/apps/"
  log "== $suite (Python $pyver): $(ls "$stage/wheels" | wc -l) wheels; results in $out"
  local filter='^(PASS|FAIL|NOTE|\[harness|[0-9]+ passed)'
  [ "${DEPLOYMENTS_VERBOSE:-0}" = 1 ] && filter='.'
  # shellcheck disable=SC2086
  HARNESS_SUITE=$suite HARNESS_CMD_TIMEOUT=${HARNESS_CMD_TIMEOUT:-900} \
  HARNESS_EXTRA_PACKAGES=python3-venv,nginx-light,supervisor,runit,runit-run \
    "$HARNESS" run --name "deployments-$suite-$$" --results "$out" \
      --copy "$stage/wheels:/harness/wheels" --copy "$stage/apps:/harness/apps" \
      "$HERE/inside.sh" $CHECKS 2>&1 | tee "$out/run.log" | grep --line-buffered -E "$filter"
  [ "${DEPLOYMENTS_KEEP_STAGE:-0}" = 1 ] || rm -rf "$stage"
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/test-output.log" 2>/dev/null | tail -1)
  [ -n "$line" ] || line="did not finish (see $out/run.log)"
  summary+=("$suite: $line")
  [ "${line#*, }" = "0 failed" ]
}

summary=()
failed=0
for suite in "${SUITES[@]}"; do
  case "$suite" in bookworm) pyver=3.11 ;; trixie) pyver=3.13 ;; esac
  mkdir -p "$RESULTS/$suite"
  run_suite "$suite" "$pyver" || failed=1
done
echo
for line in "${summary[@]}"; do echo "  $line"; done
echo "  logs: $RESULTS/SUITE/test-output.log"
[ "$failed" = 0 ]
