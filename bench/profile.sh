#!/bin/bash
# Instructions per request in the worker, counted by callgrind: the figure
# the optimisation log in bench/README.md quotes. Unlike wall-clock or CPU
# time it repeats exactly on a noisy machine.
#
#     bench/profile.sh [REQUESTS] [BINARY]      (defaults: 20000, target/release/ferrocorn)
#     CONNS=8 bench/profile.sh                   (8 connections, a request on each per round)
#     PYTHON=/path/to/python3 bench/profile.sh   (the workers' interpreter; default Debian's 3.11)
#
# Serves examples/hello.py on a UNIX socket under valgrind, sends REQUESTS
# keep-alive `GET /` requests from one client (on CONNS connections, default
# 1, so the server sees up to CONNS requests per epoll turn as under load),
# stops the server and prints
# the inclusive instruction count of the worker's event loop (and of the
# head parser) divided by the requests. KEEP=1 keeps the callgrind files
# (the path is printed) for callgrind_annotate. Needs valgrind.
set -euo pipefail

# Python's string hashes are randomised per process, and with them the
# dict probing of every environ: the count moves by a few percent from run
# to run unless the seed is fixed.
export PYTHONHASHSEED=${PYTHONHASHSEED:-0}

requests=${1:-20000}
repo=$(cd "$(dirname "$0")/.." && pwd)
binary=${2:-$repo/target/release/ferrocorn}
work=$(mktemp -d)
trap 'pkill -TERM -f "unix:$work/cg.sock" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

command -v valgrind >/dev/null || { echo "profile.sh: valgrind is not installed" >&2; exit 1; }
[ -x "$binary" ] || { echo "profile.sh: no binary at $binary (cargo build --release)" >&2; exit 1; }

# The worker runs in Debian's python3.11, as in bench/run.py (builds from
# before workers ran in the app's interpreter have no --python: they embed it).
python=()
if "$binary" --help | grep -q -- '--python <'; then
    python=(--python "${PYTHON:-/usr/bin/python3.11}")
fi
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$work/cg.%p" \
    "$binary" --chdir "$repo/examples" -b "unix:$work/cg.sock" "${python[@]}" hello >"$work/server.log" 2>&1 &

/usr/bin/python3.11 - "$work/cg.sock" "$requests" "${CONNS:-1}" <<'EOF'
import socket, sys, time

path, n, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def connect():
    deadline = time.monotonic() + 120
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("profile.sh: the server did not start (see its log)")
            time.sleep(0.5)


def read_response(s, buf):
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            length = int(buf[:end].split(b"Content-Length: ")[1].split(b"\r\n")[0])
            if len(buf) >= end + 4 + length:
                return buf[end + 4 + length:]
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("profile.sh: the server closed the connection")
        buf += chunk


request = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
socks = [connect() for _ in range(conns)]
bufs = [b""] * conns
sent = 0
while sent < n + 1:  # one more: the first request warms the worker up
    batch = range(min(conns, n + 1 - sent))
    for i in batch:
        socks[i].sendall(request)
    for i in batch:
        bufs[i] = read_response(socks[i], bufs[i])
    sent += len(batch)
EOF

pkill -TERM -f "unix:$work/cg.sock"
for _ in $(seq 1 60); do pgrep -f "unix:$work/cg.sock" >/dev/null || break; sleep 0.5; done

# The worker's profile counts the most instructions: it ran every request
# (the master's and the interpreter probe's are small).
worker=$(grep -H '^summary:' "$work"/cg.* | sort -t' ' -k2 -n | tail -1 | cut -d: -f1)
[ -z "${KEEP:-}" ] || echo "callgrind files in $work; the worker's: $worker"
callgrind_annotate --inclusive=yes "$worker" 2>/dev/null |
    awk -v n="$((requests + 1))" '
        /:ferrocorn::worker::EventLoop::run \[/ { name = "the worker event loop (all of it)" }
        /:ferrocorn::http::head::parse_head \[/ { name = "  of which parse_head" }
        name != "" { gsub(",", "", $1); printf "%8.0f instructions per request  %s\n", $1 / n, name; name = "" }'
