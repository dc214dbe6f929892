#!/usr/bin/env bash
# Version-specific native modules, beside the stable-ABI one.
#
# The stable-ABI module (abi3, the crate's default: target/release/
# libferrocorn.so) runs in every CPython 3.9+, but costs 4.4 % more
# instructions per hello request than one built for the interpreter at hand
# (callgrind, bench/profile.sh with PYTHONHASHSEED=0: 18,804 against 17,968
# on Debian's 3.11): reference counts through function calls and calls
# through argument tuples, where a version-specific build inlines them and
# uses vectorcall. So the packages and the wheel also carry one module per
# CPython at hand, named by its SOABI (_native.cpython-311-x86_64-linux-gnu.so),
# and the master's interpreter check picks the one built for the worker's
# interpreter, else the stable-ABI one.
#
#   scripts/build-native-modules.sh          (make native-modules)
#
# The interpreters: NATIVE_PYTHONS="/usr/bin/python3.11 ...", else Debian's
# python3.11 and pyenv's CPython 3.9+ (one per SOABI; free-threaded ones
# skipped: see docs/architecture.md). Each builds in its own target dir
# (target/native-build/SOABI) so that rebuilds stay incremental; the modules
# land, stripped of their line tables, in target/native/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/target/native
cargo=${CARGO:-cargo}

if [[ -n ${NATIVE_PYTHONS:-} ]]; then
    read -ra pythons <<<"$NATIVE_PYTHONS"
else
    pythons=()
    [[ -x /usr/bin/python3.11 ]] && pythons+=(/usr/bin/python3.11)
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3; do
        [[ -x $p ]] && pythons+=("$p")
    done
fi

mkdir -p "$out"
rm -f "$out"/_native.cpython-*.so
declare -A done=()
for py in "${pythons[@]}"; do
    read -r soabi ok < <("$py" -c '
import sys, sysconfig
ok = sys.version_info >= (3, 9) and not sysconfig.get_config_var("Py_GIL_DISABLED")
print(sysconfig.get_config_var("SOABI"), int(ok))')
    if [[ $ok != 1 || -n ${done[$soabi]:-} ]]; then
        continue
    fi
    done[$soabi]=1
    echo "native-modules: $soabi from $py" >&2
    PYO3_PYTHON=$py CARGO_TARGET_DIR=$root/target/native-build/$soabi \
        "$cargo" build --release --locked --lib --no-default-features
    strip --strip-debug -o "$out/_native.$soabi.so" \
        "$root/target/native-build/$soabi/release/libferrocorn.so"
done
((${#done[@]})) || { echo "native-modules: no CPython 3.9+ found" >&2; exit 1; }
ls "$out"
