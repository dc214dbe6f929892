#!/bin/bash
# ferrocorn under a real systemd (PID 1), host side.
#
#   tests/systemd/run.sh [bookworm|trixie]...     (default: both; `make systemd-test`)
#
# Builds the package (`make packaging-tools deb`; while that target does not
# exist, `cargo build --release` and the unit files from systemd/ by hand),
# then boots throw-away containers with ../shared/tools/systemd-harness:
#
#   bookworm (systemd 252)  the .deb installed with dpkg -i, then the eight
#                           checks of tests/systemd/inside.sh
#   trixie   (systemd 257)  the same binary with Debian 12's CPython 3.11
#                           runtime copied in (trixie ships 3.13), the unit
#                           files plus the notify-reload.conf drop-in, the user
#                           from the sysusers.d file; the same eight checks,
#                           where check 3 also requires `systemctl reload` to
#                           return only once the new code serves
#
# Prints the PASS/FAIL lines as they come and ends with "N passed, N failed"
# over both suites; exits non-zero if anything failed. The full logs (with the
# evidence behind each line), the journals and the artifacts are kept in
# $SYSTEMD_TEST_RESULTS (default target/systemd-test/TIMESTAMP/SUITE/).
# SYSTEMD_TEST_VERBOSE=1 streams the whole in-container log instead;
# SYSTEMD_TEST_BOOKWORM_CHECKS / SYSTEMD_TEST_TRIXIE_CHECKS pick checks ("4 5");
# SYSTEMD_TEST_NO_BUILD=1 skips the build and takes the newest
# target/debian/ferrocorn_*.deb, else target/release/ferrocorn.
#
# The containers have no network: everything the tests need is in the rootfs
# (HARNESS_EXTRA_PACKAGES=libpython3.11 on bookworm for the .deb's dependency)
# or copied in; all traffic stays on the container's own UNIX sockets.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/systemd
HARNESS=${SYSTEMD_HARNESS:-$ROOT/../shared/tools/systemd-harness/harness.sh}
RESULTS=${SYSTEMD_TEST_RESULTS:-$ROOT/target/systemd-test/$(date +%Y%m%d-%H%M%S)}
BOOKWORM_CHECKS=${SYSTEMD_TEST_BOOKWORM_CHECKS:-1 2 3 4 5 6 7 8}
TRIXIE_CHECKS=${SYSTEMD_TEST_TRIXIE_CHECKS:-1 2 3 4 5 6 7 8}
STAGE=$RESULTS/stage
PY=/usr/bin/python3.11
export PYO3_PYTHON=$PY     # link Debian's libpython3.11, as the Makefile does

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

has_target() { make -C "$ROOT" -n "$1" >/dev/null 2>&1; }

DEB=""
BIN=""
UNITS=$STAGE/units       # ferrocorn@.service/.socket, sysusers, tmpfiles, drop-ins
mkdir -p "$UNITS"
# stage_from DIR...: copy the unit, socket, drop-in, sysusers.d and tmpfiles.d
# files found under DIR into $UNITS, under fixed names; the first found wins
stage_from() {
  local f name
  while IFS= read -r f; do
    case "$f" in
      */ferrocorn@.service|*/ferrocorn@.socket|*/notify-reload.conf) name=$(basename "$f") ;;
      *sysusers*) name=ferrocorn.sysusers.conf ;;
      *tmpfiles*) name=ferrocorn.tmpfiles.conf ;;
      *) continue ;;
    esac
    [ -e "$UNITS/$name" ] || cp "$f" "$UNITS/$name"
  done < <(find "$@" -type f ! -name '*.mk' ! -name '*.md' 2>/dev/null | sort)
}

if [ "${SYSTEMD_TEST_NO_BUILD:-0}" = 1 ]; then
  # iterate on the tests without rebuilding: whatever target/ holds now
  DEB=$(ls -t "$ROOT"/target/debian/ferrocorn_*.deb 2>/dev/null | head -1)
  log "SYSTEMD_TEST_NO_BUILD=1: no build; using ${DEB:-target/release/ferrocorn}"
fi
if [ "${SYSTEMD_TEST_NO_BUILD:-0}" = 1 ] && [ -z "$DEB" ]; then
  BIN=$ROOT/target/release/ferrocorn
elif [ "${SYSTEMD_TEST_NO_BUILD:-0}" = 1 ]; then
  rm -rf "$STAGE/debroot"
  dpkg-deb -x "$DEB" "$STAGE/debroot"
  BIN=$STAGE/debroot/usr/bin/ferrocorn
  stage_from "$STAGE/debroot"
elif wait_for_other_builds; has_target deb; then
  targets=(deb)
  has_target packaging-tools && targets=(packaging-tools deb)
  log "building the package: make ${targets[*]}"
  make -C "$ROOT" --no-print-directory "${targets[@]}" >&2 || die "make ${targets[*]} failed"
  DEB=$(ls -t "$ROOT"/target/debian/ferrocorn_*.deb 2>/dev/null | head -1)
  [ -n "$DEB" ] || die "make deb produced no target/debian/ferrocorn_*.deb"
  log "package: $DEB"
  # trixie gets the very files the package ships
  rm -rf "$STAGE/debroot"
  dpkg-deb -x "$DEB" "$STAGE/debroot"
  BIN=$STAGE/debroot/usr/bin/ferrocorn
  stage_from "$STAGE/debroot"
else
  log "FALLBACK: no 'make deb' target yet (packaging/packaging.mk): cargo build --release," \
      "then the binary and the unit files from systemd/ are installed by hand (no dpkg -i)"
  cargo build --release >&2 || die "cargo build --release failed"
  BIN=$ROOT/target/release/ferrocorn
fi
[ -x "$BIN" ] || die "no binary at $BIN"
# what the package does not ship (or all of it, without a package) comes from the tree
stage_from "$ROOT/systemd" "$ROOT/packaging" "$ROOT/tmpfiles.d" "$ROOT/sysusers.d"
log "unit files staged: $(ls "$UNITS" | tr '\n' ' ')"
[ -f "$UNITS/ferrocorn@.service" ] || log "WARNING: no ferrocorn@.service yet (systemd/): the checks will fail at install"

# manual LAYOUT DIR: bin/, units/ (+ dropins/) as inside.sh expects under /harness/manual
stage_manual() {
  local d=$1
  mkdir -p "$d/bin" "$d/units" "$d/dropins"
  cp "$BIN" "$d/bin/ferrocorn"
  local f
  for f in "$UNITS"/*; do
    [ -f "$f" ] || continue
    case "$(basename "$f")" in
      notify-reload.conf) ;;                  # systemd >= 253 only
      *.conf|*.service|*.socket) cp "$f" "$d/units/" ;;
    esac
  done
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
    bookworm)
      COPIES=(--copy "$HERE/apps:/harness/apps")
      if [ -n "$DEB" ]; then
        mkdir -p "$STAGE/bookworm/pkg"; cp "$DEB" "$STAGE/bookworm/pkg/"
        COPIES+=(--copy "$STAGE/bookworm/pkg:/harness/pkg")
      else
        stage_manual "$STAGE/bookworm/manual"
        COPIES+=(--copy "$STAGE/bookworm/manual:/harness/manual")
      fi
      # shellcheck disable=SC2086
      HARNESS_SUITE=bookworm HARNESS_EXTRA_PACKAGES=libpython3.11 run_suite bookworm $BOOKWORM_CHECKS
      ;;
    trixie)
      m=$STAGE/trixie/manual
      rm -rf "$m"
      stage_manual "$m"
      [ -f "$UNITS/notify-reload.conf" ] && cp "$UNITS/notify-reload.conf" "$m/dropins/"
      [ -f "$UNITS/notify-reload.conf" ] || log "WARNING: no notify-reload.conf drop-in staged: trixie runs with Type=notify"
      # Debian 12's CPython 3.11 runtime: libpython (needs libc, libm, libz,
      # libexpat; all in trixie's base) and the standard library
      mkdir -p "$m/python/lib"
      cp -L /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 "$m/python/lib/"
      tar -C /usr/lib --exclude=python3.11/test --exclude=python3.11/idlelib \
          --exclude=python3.11/tkinter --exclude=python3.11/lib2to3/tests -cf - python3.11 |
        tar -C "$m/python" -xf -
      [ -d /etc/python3.11 ] && cp -a /etc/python3.11 "$m/python/etc"
      log "trixie: libpython3.11 needs: $(ldd /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 | awk '{print $1}' | tr '\n' ' ')"
      COPIES=(--copy "$HERE/apps:/harness/apps" --copy "$m:/harness/manual")
      # shellcheck disable=SC2086
      HARNESS_SUITE=trixie HARNESS_EXTRA_PACKAGES= run_suite trixie $TRIXIE_CHECKS
      ;;
  esac
done

# the staged binary, units and Python runtime (~50 MB) are rebuilt every run
[ "${SYSTEMD_TEST_KEEP_STAGE:-0}" = 1 ] || rm -rf "$STAGE"

echo
for s in "${summary[@]}"; do echo "  $s"; done
echo "  logs: $RESULTS/{$(IFS=,; echo "${SUITES[*]}")}/test-output.log"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
