#!/usr/bin/env python3
"""Worker start-up cost: how long a worker takes from its start to serving.

For each binary (this build, and optionally a baseline) and each app (hello,
and Flask from a virtualenv), with one worker on a UNIX socket:

- cold start: from starting the master to the first answered request
  (master start, interpreter check, worker start, app import), N times;
- respawn: SIGKILL the worker, time until its replacement answers, N times
  (each after the crash-loop backoff of a young worker has passed);

and Flask again with a gunicorn.conf.py, where the arbiter forks the
workers (docs/architecture.md, "Server hooks").

    python3 scripts/boot-bench.py [--bin B] [--baseline OLD_BIN] [--venv .venv] [-n 10]

Loopback/UNIX sockets only; every loop is bounded in time and count.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from importlib import import_module  # noqa: E402

get = import_module("lifecycle-bench").get


def wait_answer(sock, deadline, not_pid=None):
    while time.monotonic() < deadline:
        try:
            status, body = get("/pid", sock, timeout=2)
            if status == 200 and (not_pid is None or int(body) != not_pid):
                return int(body)
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    return None


def run(binary, app, extra, n, tmp):
    sock = os.path.join(tmp, "app.sock")
    cold, respawn = [], []
    log = open(os.path.join(tmp, "server.log"), "a")
    for i in range(n):
        t = time.monotonic()
        proc = subprocess.Popen(
            [binary, "--chdir", os.path.join(REPO, "tests", "apps"), "-b", "unix:" + sock,
             "-w", "1", app] + extra,
            stdout=log, stderr=log, start_new_session=True)
        try:
            pid = wait_answer(sock, t + 30)
            if pid is None:
                sys.exit("%s never answered; see %s/server.log" % (binary, tmp))
            cold.append(time.monotonic() - t)
            if i == 0:
                for _ in range(n):
                    time.sleep(1.1)  # past the crash-loop backoff window
                    t = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
                    pid = wait_answer(sock, t + 30, not_pid=pid)
                    if pid is None:
                        sys.exit("no replacement answered; see %s/server.log" % tmp)
                    respawn.append(time.monotonic() - t)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return cold, respawn


def ms(xs):
    return "median %4.0f ms, min %4.0f, max %4.0f" % (
        statistics.median(xs) * 1e3, min(xs) * 1e3, max(xs) * 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "ferrocorn"))
    ap.add_argument("--baseline", help="an earlier build to measure beside this one")
    ap.add_argument("--venv", default=os.path.join(REPO, ".venv"), help="a virtualenv with Flask")
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ferrocorn-boot-")
    # With a gunicorn.conf.py an arbiter forks the workers (server hooks):
    # its cold start runs the file twice, its respawn is a fork, not an exec.
    conf = os.path.join(tmp, "gunicorn.conf.py")
    with open(conf, "w") as f:
        f.write("def post_fork(server, worker):\n    pass\n")
    apps = [("hello", "testapp:app", []),
            ("Flask", "flask_probe:app", ["--virtualenv", args.venv]),
            ("Flask+conf.py", "flask_probe:app", ["--virtualenv", args.venv, "-c", conf])]
    bins = [("this build", args.bin)] + ([("baseline", args.baseline)] if args.baseline else [])
    for name, app, extra in apps:
        for label, binary in bins:
            cold, respawn = run(binary, app, extra, args.n, tmp)
            print("%-13s %-10s cold start to first answer: %s; respawn after SIGKILL: %s"
                  % (name, label, ms(cold), ms(respawn)))


if __name__ == "__main__":
    main()
