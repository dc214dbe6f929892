#!/usr/bin/env python3
"""The two hostile-client scenarios of issue 12, measured as a user sees them.

One ferrocorn worker with default settings (`-w 1`, plus --threads when
given) serves bench/apps/hostile.py on 127.0.0.1. While the hostile clients
are attached, a normal client makes requests on fresh connections and the
report gives how many were answered and their median latency, and the
worker's peak resident memory.

  slow-readers  N clients ask for /big (50 MiB, made fresh per request)
                and never read a byte; the normal client makes 20 requests
                0.25 s apart, each given 3 s.
  slowloris     N connections send a partial head, then one more byte
                every 2 s; the normal client makes a request every second
                (or when the last one gave up) for 20 s, each given 5 s.

  python3 bench/slow_clients.py slow-readers --clients 1
  python3 bench/slow_clients.py slow-readers --clients 8 --threads 4
  python3 bench/slow_clients.py slowloris --clients 1500
  FERROCORN_BIN=/path/to/older/ferrocorn python3 bench/slow_clients.py ...

Bounded: every socket has a timeout, the scenario ends after its requests,
and the server is stopped (TERM, then KILL) at the end.
"""

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, target, timeout):
    """One GET on a fresh connection: latency in seconds, or None."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - start)))
            s.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % target.encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                s.settimeout(max(0.01, timeout - (time.monotonic() - start)))
        if data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n"):
            return time.monotonic() - start
    except OSError:
        pass
    return None


def worker_pids(master):
    try:
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(p) for p in out.split()]


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """The workers' peak RSS, sampled every 100 ms."""

    def __init__(self, master):
        super().__init__(daemon=True)
        self.master, self.peak, self.stop = master, 0.0, threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            self.peak = max([self.peak] + [rss_mib(p) for p in worker_pids(self.master)])


def slow_readers(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n")
        socks.append(s)
    time.sleep(1)
    return socks, None


def slowloris(port, n):
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            break
    stop = threading.Event()

    def drip():
        while not stop.wait(2):
            for s in list(socks):
                try:
                    s.send(b"x")
                except OSError:
                    socks.remove(s)

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    time.sleep(1)
    return socks, stop


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["slow-readers", "slowloris"])
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.clients + 1024)), hard))

    binary = os.environ.get("FERROCORN_BIN", os.path.join(ROOT, "target/release/ferrocorn"))
    port = free_port()
    cmd = [binary, "-w", "1", "--threads", str(args.threads), "-b", "127.0.0.1:%d" % port,
           "--chdir", os.path.join(ROOT, "bench/apps"), "--log-level", "warning", "hostile:app"]
    server = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while request(port, "/", 1) is None:
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the server did not answer within 60 s")
            time.sleep(0.1)
        sampler = Sampler(server.pid)
        sampler.start()
        attach = slow_readers if args.scenario == "slow-readers" else slowloris
        socks, stop = attach(port, args.clients)
        attached = len(socks)
        latencies = []
        # slow-readers: 20 requests; slowloris: as many as fit in 20 s.
        if args.scenario == "slow-readers":
            most, window, timeout, gap = 20, None, 3.0, 0.25
        else:
            most, window, timeout, gap = None, 20.0, 5.0, 1.0
        start = time.monotonic()
        attempts = 0
        while (most is None or attempts < most) and (
                window is None or time.monotonic() - start < window):
            t = request(port, "/", timeout)
            attempts += 1
            if t is not None:
                latencies.append(t)
            # Keep to the schedule: one request every `gap` seconds at most.
            time.sleep(max(0.0, start + attempts * gap - time.monotonic()))
        if stop:
            stop.set()
        sampler.stop.set()
        sampler.join()
        result = {
            "scenario": args.scenario,
            "clients": args.clients,
            "threads": args.threads,
            "hostile_attached": attached,
            "hostile_open_at_end": len(socks),
            "answered": len(latencies),
            "attempts": attempts,
            "median_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "worker_peak_rss_mib": round(sampler.peak, 1),
            "binary": binary,
        }
        for s in socks:
            s.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    if args.json:
        print(json.dumps(result))
    else:
        # The slowloris connections the server closed are seen when a drip fails.
        open_at_end = (", %(hostile_open_at_end)d still open at the end" % result
                       if args.scenario == "slowloris" else "")
        print(("%(scenario)s, %(clients)d hostile client(s) (%(hostile_attached)d attached"
               + open_at_end + "), "
              "--threads %(threads)d: %(answered)d of %(attempts)d answered, median %(median_ms)s ms, "
               "worker peak RSS %(worker_peak_rss_mib)s MiB") % result)


if __name__ == "__main__":
    main()
