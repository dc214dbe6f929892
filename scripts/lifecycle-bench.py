#!/usr/bin/env python3
"""Measure the master's life cycle under a steady load (issue 4's figures).

- 20 back-to-back HUPs (each waits for the READY=1 that ends the previous
  reload) while a client loop sends requests: failed requests, and the time
  from HUP to READY=1 (the new generation serving);
- SIGKILL of the only worker, 10 times: time until a request is answered
  by its replacement;
- SIGKILL of one of two workers, 10 times, under the same steady loop: the
  failed requests (at most the one the killed worker was running can fail:
  the listen queue keeps the rest for the other worker and the replacement).

    python3 scripts/lifecycle-bench.py [--bin target/release/ferrocorn] [--workers 2]

Loopback/UNIX sockets only; every loop is bounded in time and count.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get(path, sock, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body
    finally:
        s.close()


def start(binary, workers, sock, notify_path, tmp):
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, PYTHONDONTWRITEBYTECODE="1")
    log = open(os.path.join(tmp, "server.log"), "w")
    proc = subprocess.Popen(
        [binary, "--chdir", os.path.join(REPO, "tests", "apps"), "-b", "unix:" + sock,
         "-w", str(workers), "testapp:app"],
        env=env, stdout=log, stderr=log, start_new_session=True)
    return proc


def wait_line(notify, line, deadline):
    while time.monotonic() < deadline:
        try:
            msg = notify.recv(4096).decode()
        except socket.timeout:
            continue
        if line in msg.splitlines():
            return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "ferrocorn"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--hups", type=int, default=20)
    ap.add_argument("--kills", type=int, default=10)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ferrocorn-lifecycle-")
    sock = os.path.join(tmp, "app.sock")
    notify_path = os.path.join(tmp, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.2)

    proc = start(args.bin, args.workers, sock, notify_path, tmp)
    try:
        if not wait_line(notify, "READY=1", time.monotonic() + 30):
            sys.exit("server never sent READY=1; see %s/server.log" % tmp)

        stats = {"ok": 0, "failed": 0, "errors": []}
        stop = threading.Event()

        def load():
            t0 = time.monotonic()
            while not stop.is_set() and time.monotonic() - t0 < 300 and stats["ok"] < 10_000_000:
                try:
                    status, _ = get("/", sock)
                    if status == 200:
                        stats["ok"] += 1
                        continue
                    stats["errors"].append("status %d" % status)
                except OSError as e:
                    stats["errors"].append(repr(e))
                stats["failed"] += 1

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(0.5)
        reload_times = []
        for _ in range(args.hups):
            t = time.monotonic()
            os.kill(proc.pid, signal.SIGHUP)
            if not wait_line(notify, "READY=1", t + 30):
                sys.exit("no READY=1 after a HUP; see %s/server.log" % tmp)
            reload_times.append(time.monotonic() - t)
        time.sleep(0.5)
        stop.set()
        loader.join(10)
        print("%d back-to-back HUPs under a steady loop: %d requests, %d failed %s"
              % (args.hups, stats["ok"] + stats["failed"], stats["failed"], stats["errors"][:3]))
        print("HUP -> new generation serving (READY=1): median %.0f ms, min %.0f ms, max %.0f ms"
              % (statistics.median(reload_times) * 1e3, min(reload_times) * 1e3, max(reload_times) * 1e3))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

    # Respawn latency: one worker, SIGKILL it, time until a replacement answers.
    proc = start(args.bin, 1, sock, notify_path, tmp)
    try:
        if not wait_line(notify, "READY=1", time.monotonic() + 30):
            sys.exit("server never sent READY=1")
        time.sleep(1.1)  # past the crash-loop backoff window of a new worker
        latencies = []
        for _ in range(args.kills):
            old = int(get("/pid", sock)[1])
            t = time.monotonic()
            os.kill(old, signal.SIGKILL)
            while time.monotonic() - t < 10:
                try:
                    status, body = get("/pid", sock, timeout=2)
                    if status == 200 and int(body) != old:
                        latencies.append(time.monotonic() - t)
                        break
                except OSError:
                    time.sleep(0.005)
            time.sleep(1.1)  # past the crash-loop backoff window
        print("SIGKILL of the only worker -> replacement answering: median %.0f ms, max %.0f ms (n=%d)"
              % (statistics.median(latencies) * 1e3, max(latencies) * 1e3, len(latencies)))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

    # Crashes under load: two workers, one SIGKILLed at a time.
    proc = start(args.bin, 2, sock, notify_path, tmp)
    try:
        if not wait_line(notify, "READY=1", time.monotonic() + 30):
            sys.exit("server never sent READY=1")
        stats = {"ok": 0, "failed": 0, "errors": []}
        stop = threading.Event()

        def crash_load():
            t0 = time.monotonic()
            while not stop.is_set() and time.monotonic() - t0 < 120:
                try:
                    status, _ = get("/", sock)
                    if status == 200:
                        stats["ok"] += 1
                        continue
                    stats["errors"].append("status %d" % status)
                except OSError as e:
                    stats["errors"].append(repr(e))
                stats["failed"] += 1

        loader = threading.Thread(target=crash_load, daemon=True)
        loader.start()
        for _ in range(args.kills):
            time.sleep(1.2)  # past the crash-loop backoff of the last replacement
            victim = int(get("/pid", sock)[1])
            os.kill(victim, signal.SIGKILL)
        time.sleep(1.2)
        stop.set()
        loader.join(10)
        print("%d SIGKILLs of one of two workers under a steady loop: %d requests, %d failed %s"
              % (args.kills, stats["ok"] + stats["failed"], stats["failed"], stats["errors"][:3]))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            sys.exit("the server did not stop within 30 s of TERM; see %s/server.log" % tmp)


if __name__ == "__main__":
    main()
