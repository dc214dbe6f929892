#!/bin/bash
# What server hooks cost per request: hello on one worker pinned to core 0,
# wrk -t1 -c16 on core 1, worker CPU (utime + stime) per request, for
#   none   no configuration file (workers exec'd by the master);
#   plain  a gunicorn.conf.py without hooks (workers forked by the arbiter);
#   hooks  one with empty pre_request and post_request.
#
#   bench/hook_cost.sh [SECONDS]     (needs bench/setup.sh's venv and wrk)
#
# Loopback only; each run is bounded by wrk's duration.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-8}
bin=$root/target/release/ferrocorn
[ -x "$bin" ] || (cd "$root" && cargo build --release)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'workers = 1\n' > "$tmp/plain.py"
printf 'def pre_request(worker, req):\n    pass\ndef post_request(worker, req, environ, resp):\n    pass\n' > "$tmp/hooks.py"
port=18140
for conf in none plain hooks; do
  args=()
  [ "$conf" != none ] && args=(-c "$tmp/$conf.py")
  taskset -c 0 "$bin" "${args[@]}" -b "127.0.0.1:$port" -w 1 --log-level warning \
    --virtualenv "$root/bench/.venv" --chdir "$root/bench/apps" hello:application \
    > "$tmp/$conf.log" 2>&1 &
  master=$!
  worker=
  for _ in $(seq 100); do
    worker=$(pgrep -P "$master" -f 'ferrocorn: worker' | head -1 || true)
    [ -n "$worker" ] && curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  [ -n "$worker" ] || { echo "$conf: no worker (see $tmp/$conf.log)"; kill "$master"; exit 1; }
  taskset -c 1 wrk -t1 -c16 -d2s "http://127.0.0.1:$port/" > /dev/null
  t0=$(awk '{print $14 + $15}' "/proc/$worker/stat")
  reqs=$(taskset -c 1 wrk -t1 -c16 -d"${secs}s" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
  t1=$(awk '{print $14 + $15}' "/proc/$worker/stat")
  hz=$(getconf CLK_TCK)
  python3 -c "print('%-6s %9d requests  worker CPU %5.2f µs/request' % ('$conf', $reqs, ($t1 - $t0) / $hz * 1e6 / $reqs))"
  kill -TERM "$master"; wait "$master" || true
  port=$((port + 1))
done
