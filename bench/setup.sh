#!/usr/bin/env bash
# Installs what bench/run.py measures against, idempotently:
#   - wrk (Debian) as the load generator, libev-dev + a compiler for bjoern;
#   - bench/.venv, made by Debian's /usr/bin/python3.11 (the interpreter
#     ferrocorn embeds, so every server runs the same CPython), holding the
#     peers gunicorn, granian, pyuwsgi (uWSGI as a wheel), bjoern (built from
#     its sdist against libev) and flask for the Flask workload.
# Versions land in bench/results/versions.txt. A peer that fails to install is
# reported and skipped; run.py then leaves it out.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
py=/usr/bin/python3.11
mkdir -p "$here/results"

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
[ -e /usr/include/ev.h ] || need_apt+=(libev-dev)
command -v cc >/dev/null || need_apt+=(build-essential)
[ -e /usr/include/python3.11/Python.h ] || need_apt+=(python3.11-dev)
$py -c 'import ensurepip' 2>/dev/null || need_apt+=(python3.11-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" \
        || { echo "setup: apt-get install failed" >&2; exit 1; }
fi

if [ ! -x "$venv/bin/python" ]; then
    $py -m venv "$venv" || { echo "setup: venv creation failed" >&2; exit 1; }
fi
vpip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

failed=()
for pkg in gunicorn granian pyuwsgi flask; do
    "${vpip[@]}" install "$pkg" || failed+=("$pkg")
done
# bjoern ships only an sdist: build it against Debian's libev.
if ! "$venv/bin/python" -c 'import bjoern' 2>/dev/null; then
    "${vpip[@]}" install --use-pep517 bjoern || failed+=(bjoern)
fi

{
    echo "# bench/setup.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "python $($venv/bin/python -c 'import sys; print(sys.version.split()[0])') ($py)"
    for dist in gunicorn granian pyuwsgi bjoern flask werkzeug; do
        v="$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null)"
        echo "$dist ${v:-not installed}"
    done
    echo "wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo '?')"
    echo "libev $(dpkg-query -W -f='${Version}' libev-dev 2>/dev/null || echo '?')"
    echo "kernel $(uname -r)"
} > "$here/results/versions.txt"
cat "$here/results/versions.txt"

if [ ${#failed[@]} -gt 0 ]; then
    echo "setup: could not install: ${failed[*]} (run.py will skip them)" >&2
fi
exit 0
