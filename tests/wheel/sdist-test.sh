#!/usr/bin/env bash
# pip install of ferrocorn's sdist into a fresh venv of Debian's Python, as
# a user with a Rust toolchain does it: pip's isolated build fetches maturin
# from PyPI and the in-tree backend builds the master and the module. Then
# the venv's ferrocorn must serve examples/hello.py in the venv's python.
#
#   tests/wheel/sdist-test.sh target/wheels/ferrocorn-VERSION.tar.gz   (make sdist-test)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
sdist=$(realpath "${1:?usage: $0 SDIST}")
venv=$root/target/sdist-test/venv
rm -rf "$venv"
/usr/bin/python3.11 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir "$sdist"
[[ -x $venv/bin/ferrocorn ]] || { echo "sdist-test: no $venv/bin/ferrocorn" >&2; exit 1; }
sock=$root/target/sdist-test/hello.sock
log=$root/target/sdist-test/server.log
"$venv/bin/ferrocorn" --chdir "$root/examples" -b "unix:$sock" hello >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
body=
for _ in $(seq 100); do
    body=$(curl -s --max-time 2 --unix-socket "$sock" http://localhost/ || true)
    [[ -n $body ]] && break
    sleep 0.1
done
if [[ $body != "Hello, World!" ]] || ! grep -q "Using Python: $venv/bin/python" "$log"; then
    echo "sdist-test: the installed ferrocorn did not serve hello in $venv/bin/python" >&2
    cat "$log" >&2
    exit 1
fi
echo "sdist-test: pip install of $(basename "$sdist") serves hello in $venv/bin/python"
