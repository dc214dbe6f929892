#!/bin/bash
# ferrocorn under a real systemd (PID 1), host side.
#
#   tests/systemd/run.sh [bookworm|trixie]...     (default: both; `make systemd-test`)
#
# Builds the .deb (`make packaging-tools deb`) and the wheel (`make wheel`),
# downloads Flask's wheels for each suite's CPython (the containers have no
# network), then boots throw-away containers with tests/systemd/harness:
#
#   bookworm (systemd 252, python3 3.11)  the .deb installed with dpkg -i,
#   trixie   (systemd 257, python3 3.13)  the same .deb, plus the
#                                         notify-reload.conf drop-in
#
# and runs the nine checks of tests/systemd/inside.sh in each: the eight of
# the units (socket activation, readiness, reload, watchdog, stop, journal,
# ...; on trixie check 3 also requires `systemctl reload` to return only once
# the new code serves), and check 9: the wheel in a fresh venv of the
# distribution's python3, Flask served through venv/bin/ferrocorn, with
# Gunicorn's request corpus and the Flask checks run against it.
#
# Prints the PASS/FAIL lines as they come and ends with "N passed, N failed"
# over both suites; exits non-zero if anything failed. The full logs (with the
# evidence behind each line), the journals and the artifacts are kept in
# $SYSTEMD_TEST_RESULTS (default target/systemd-test/TIMESTAMP/SUITE/).
# SYSTEMD_TEST_VERBOSE=1 streams the whole in-container log instead;
# SYSTEMD_TEST_BOOKWORM_CHECKS / SYSTEMD_TEST_TRIXIE_CHECKS pick checks ("4 5");
# SYSTEMD_TEST_NO_BUILD=1 skips the builds and takes the newest
# target/debian/ferrocorn_*.deb and target/wheels/ferrocorn-*.whl.
#
# Everything the tests need is in the rootfs (python3-venv is added with
# HARNESS_EXTRA_PACKAGES) or copied in; all traffic stays on the container's
# own UNIX sockets and loopback.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/systemd
HARNESS=${SYSTEMD_HARNESS:-$HERE/harness/harness.sh}
RESULTS=${SYSTEMD_TEST_RESULTS:-$ROOT/target/systemd-test/$(date +%Y%m%d-%H%M%S)}
BOOKWORM_CHECKS=${SYSTEMD_TEST_BOOKWORM_CHECKS:-1 2 3 4 5 6 7 8 9}
TRIXIE_CHECKS=${SYSTEMD_TEST_TRIXIE_CHECKS:-1 2 3 4 5 6 7 8 9}
STAGE=$RESULTS/stage

SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(bookworm trixie)

log() { printf '[systemd-test %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn)"
[ -x "$HARNESS" ] || die "harness not found: $HARNESS (set SYSTEMD_HARNESS)"
for s in "${SUITES[@]}"; do
  case "$s" in bookworm|trixie) ;; *) die "unknown suite '$s' (bookworm, trixie)" ;; esac
done
mkdir -p "$RESULTS" "$STAGE"
cd "$ROOT" || exit 2

# ------------------------------------------------------------------ build
# Another session may be compiling in this tree; two release builds at once
# only slow each other down (2 cores). Wait for theirs, bounded.
wait_for_other_builds() {
  local deadline=$(( $(date +%s) + ${SYSTEMD_TEST_BUILD_WAIT:-900} )) said=0
  while pgrep -f "cargo build" >/dev/null || pgrep -f "cargo deb" >/dev/null; do
    if [ $said = 0 ]; then log "waiting for a running cargo build to finish: $(pgrep -af 'cargo (build|deb)' | head -2 | tr '\n' ';')"; said=1; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then log "still running after the wait; building anyway"; return; fi
    sleep 5
  done
}

if [ "${SYSTEMD_TEST_NO_BUILD:-0}" = 1 ]; then
  log "SYSTEMD_TEST_NO_BUILD=1: no build; using what target/ holds"
else
  wait_for_other_builds
  log "building the package and the wheel: make packaging-tools deb wheel"
  make -C "$ROOT" --no-print-directory packaging-tools deb wheel >&2 || die "make packaging-tools deb wheel failed"
fi
DEB=$(ls -t "$ROOT"/target/debian/ferrocorn_*.deb 2>/dev/null | head -1)
WHEEL=$(ls -t "$ROOT"/target/wheels/ferrocorn-*.whl 2>/dev/null | head -1)
[ -n "$DEB" ] || die "no target/debian/ferrocorn_*.deb (make deb)"
[ -n "$WHEEL" ] || die "no target/wheels/ferrocorn-*.whl (make wheel)"
log "package: $DEB; wheel: $WHEEL"

# What every suite gets: the package, the drop-in (used where systemd >= 253),
# the test apps, the wheel checks (examples, the Flask probe, the corpus).
mkdir -p "$STAGE/pkg" "$STAGE/dropins" "$STAGE/repo/tests"
cp "$DEB" "$STAGE/pkg/"
cp "$ROOT/systemd/notify-reload.conf" "$STAGE/dropins/"
cp -r "$ROOT/examples" "$ROOT/scripts" "$STAGE/repo/"
cp -r "$ROOT/tests/conformance" "$ROOT/tests/apps" "$ROOT/tests/wheel" "$STAGE/repo/tests/"

# stage_wheels SUITE PYVER: ferrocorn's wheel and Flask's for CPython PYVER
# (e.g. 3.13), downloaded here for the container, which has no network.
stage_wheels() {
  local d=$STAGE/$1/wheels
  mkdir -p "$d"
  cp "$WHEEL" "$d/"
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
      --python-version "$2" --implementation cp --platform manylinux2014_x86_64 \
      --platform manylinux_2_17_x86_64 --platform any -d "$d" \
      -r "$ROOT/examples/requirements.txt" >&2 || die "pip download of Flask for Python $2 failed"
  log "$1: wheels for Python $2: $(ls "$d" | tr '\n' ' ')"
}

# ------------------------------------------------------------------ suites
total_pass=0
total_fail=0
summary=()

# run_suite SUITE [inside.sh args...] (with HARNESS_* and COPIES set by the caller)
run_suite() {
  local suite=$1; shift
  local out=$RESULTS/$suite
  mkdir -p "$out"
  log "== $suite: booting the container (results: $out)"
  local filter='^(PASS|FAIL|NOTE|\[harness|[0-9]+ passed)'
  [ "${SYSTEMD_TEST_VERBOSE:-0}" = 1 ] && filter='.'
  HARNESS_CMD_TIMEOUT=${HARNESS_CMD_TIMEOUT:-420} \
    "$HARNESS" run --name "ferrocorn-$suite-$$" --results "$out" "${COPIES[@]}" \
      "$HERE/inside.sh" --suite "$suite" "$@" 2>&1 |
    tee "$out/run.log" | grep --line-buffered -E "$filter"
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/test-output.log" 2>/dev/null | tail -1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed}
  else
    # count what it printed, plus one failure for not finishing
    p=$(grep -c '^PASS: ' "$out/test-output.log" 2>/dev/null); p=${p:-0}
    f=$(grep -c '^FAIL: ' "$out/test-output.log" 2>/dev/null); f=$(( ${f:-0} + 1 ))
    echo "FAIL: $suite: the in-container script did not finish (see $out/run.log)"
    line="did not finish: $p passed, $f failed"
  fi
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  summary+=("$suite: $line")
}

for suite in "${SUITES[@]}"; do
  case "$suite" in
    bookworm) pyver=3.11; checks=$BOOKWORM_CHECKS ;;
    trixie) pyver=3.13; checks=$TRIXIE_CHECKS ;;
  esac
  stage_wheels "$suite" "$pyver"
  COPIES=(--copy "$HERE/apps:/harness/apps" --copy "$STAGE/pkg:/harness/pkg"
          --copy "$STAGE/dropins:/harness/dropins" --copy "$STAGE/repo:/harness/repo"
          --copy "$STAGE/$suite/wheels:/harness/wheels")
  # shellcheck disable=SC2086
  HARNESS_SUITE=$suite HARNESS_EXTRA_PACKAGES=python3-venv run_suite "$suite" $checks
done

# the staged package, wheels and copies are made again every run
[ "${SYSTEMD_TEST_KEEP_STAGE:-0}" = 1 ] || rm -rf "$STAGE"

echo
for s in "${summary[@]}"; do echo "  $s"; done
echo "  logs: $RESULTS/{$(IFS=,; echo "${SUITES[*]}")}/test-output.log"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
