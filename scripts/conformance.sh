#!/usr/bin/env bash
# Replays Gunicorn's request-parser corpus (tests/conformance, the
# repository's copy) against a live ferrocorn serving the corpus's probe app on a
# free loopback port: once with the default settings, then once per row of
# CONFIGS below for the cases that need a non-default setting. Fails if any
# run fails.
#
#   scripts/conformance.sh [gunicorn_corpus.py arguments, e.g. -v or -k chunked]
#
# FERROCORN_BIN overrides the binary (a wheel's venv/bin/ferrocorn, say).
set -euo pipefail

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null ||
    (cd "$(dirname "$0")/.." && pwd))
conformance=$repo/tests/conformance
bin=${FERROCORN_BIN:-$repo/target/debug/ferrocorn}

# ferrocorn flags | the Gunicorn settings they match (--server-config of the
# runner). A case runs only against a server declared with exactly its
# settings. Every case runs but valid/028 (strip_header_spaces, which
# ferrocorn refuses: a request-smuggling vector).
CONFIGS=(
    "|"
    "--limit-request-field_size 8210 --limit-request-line 8200|limit_request_field_size=8210 limit_request_line=8200"
    "--limit-request-field_size 8210|limit_request_field_size=8210"
    "--limit-request-field_size 10|limit_request_field_size=10"
    "--limit-request-field_size 98|limit_request_field_size=98"
    "--limit-request-fields 2|limit_request_fields=2"
    "--limit-request-field_size 14 --permit-obsolete-folding|limit_request_field_size=14 permit_obsolete_folding=true"
    "--permit-obsolete-folding|permit_obsolete_folding=true"
    "--permit-unconventional-http-method --casefold-http-method|permit_unconventional_http_method=true casefold_http_method=true"
    "--permit-unconventional-http-method|permit_unconventional_http_method=true"
    "--header-map dangerous|header_map=dangerous"
    "--header-map refuse|header_map=refuse"
    "--forwarded-allow-ips *|forwarded_allow_ips=*"
    "--proxy-protocol auto|proxy_protocol=true"
)

[[ -f $conformance/gunicorn_corpus.py ]] || { echo "conformance: no $conformance/gunicorn_corpus.py" >&2; exit 2; }
[[ -x $bin ]] || { echo "conformance: no $bin (run make build)" >&2; exit 2; }

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ferrocorn-conformance.XXXXXX")
log=$workdir/server.log
pid=

stop_server() {
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}
trap 'stop_server; rm -rf "$workdir"' EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server FLAGS...: starts ferrocorn on a free port ($port) and waits
# until it answers; a lost race for the port is retried on a new one.
start_server() {
    local attempt
    for attempt in 1 2 3; do
        port=$(free_port)
        "$bin" --chdir "$conformance" -b "127.0.0.1:$port" "$@" probe_app:app >"$log" 2>&1 &
        pid=$!
        local deadline=$((SECONDS + 15))
        while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
            if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
                return 0
            fi
            sleep 0.1
        done
        echo "conformance: server not ready (attempt $attempt); its log:" >&2
        cat "$log" >&2
        stop_server
    done
    echo "conformance: ferrocorn $* did not start" >&2
    return 1
}

status=0
passed=0
failed=0
for row in "${CONFIGS[@]}"; do
    read -r -a flags <<<"${row%%|*}"
    read -r -a settings <<<"${row#*|}"
    declared=()
    for s in "${settings[@]}"; do declared+=(--server-config "$s"); done

    echo "# ferrocorn ${flags[*]:-(defaults)}"
    start_server "${flags[@]}" || { status=1; continue; }
    rc=0
    python3 "$conformance/gunicorn_corpus.py" --target "127.0.0.1:$port" "${declared[@]}" "$@" \
        >"$workdir/run.out" 2>&1 || rc=$?
    # The default run lists every case; the others only what they ran.
    if ((${#flags[@]})); then grep -v '^SKIP ' "$workdir/run.out" || true; else cat "$workdir/run.out"; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "conformance: the server died during the run" >&2
        rc=1
    fi
    stop_server
    if ((rc != 0)); then
        status=1
        echo "--- server log (last 100 lines) ---" >&2
        tail -n 100 "$log" >&2
    fi
    summary=$(grep -E '^gunicorn-corpus: [0-9]+ passed, [0-9]+ failed' "$workdir/run.out" || true)
    if [[ $summary =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
    else
        status=1
    fi
done

echo "conformance: $passed passed, $failed failed"
exit "$status"
