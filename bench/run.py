#!/usr/bin/python3.11
"""ferrocorn's load benchmark against Gunicorn, Granian, uWSGI and bjoern.

    bench/setup.sh && python3.11 bench/run.py [--quick] [--servers ...] [--workloads ...]

For every server x workload it starts the server fresh with ONE worker
process pinned to core 0 (`taskset -c 0`, in a session of its own), waits
until it answers, warms it up, then runs `wrk -t1` pinned to core 1 and
records: requests/s, p50/p99 latency, errors (non-2xx and socket errors),
server CPU time per answered request (utime+stime of every process of the
server's session, master and workers, from /proc/PID/stat before and after
wrk), RSS and PSS (/proc/PID/smaps_rollup) of all its processes at the end,
and the load generator's own CPU time (to tell who was the limit). Runs are
interleaved: round after round, each round runs every workload on every
server, in a server order rotated per round.

Writes every raw run to bench/results/<timestamp>.json (rewritten after each
run, so an interrupted benchmark keeps what it measured) and a Markdown
report to bench/results/<timestamp>.md, which it also prints.

Standard library only; run it with Debian's python3.11 (the peers run from
bench/.venv, made by bench/setup.sh with the same interpreter).
"""

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import http.client
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv"
APPS = BENCH / "apps"
RESULTS = BENCH / "results"
SERVER_CPU = "0"
CLIENT_CPU = "1"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20

# --------------------------------------------------------------------------
# Workloads


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    title: str
    app: str  # MODULE:CALLABLE in bench/apps
    path: str = "/"
    connections: int = 64
    threads: int = 1  # app threads in the one worker
    post_bytes: int = 0  # request body size (POST) when > 0
    pipeline: int = 1  # requests per write
    idle: int = 0  # idle keep-alive connections held during the run
    close: bool = False  # wrk sends `Connection: close`: a connection per request
    target_us: float | None = None  # ferrocorn's CPU µs/request target (issue 5)
    extra: bool = False  # not in the default set; run with --workloads NAME

    @property
    def module(self):
        return self.app.partition(":")[0]

    @property
    def callable(self):
        return self.app.partition(":")[2] or "application"


WORKLOADS = [
    Workload("hello", "hello (13-byte body)", "hello:application", target_us=7.0),
    Workload("flask", "Flask `jsonify`", "flask_json:app", target_us=55.0),
    Workload("big", "1 MiB response, one chunk", "big:application", target_us=90.0),
    Workload("big_chunks", "1 MiB response, 64 × 16 KiB", "big:application", "/chunks", target_us=120.0),
    Workload("big_gen", "1 MiB response, 64 × 16 KiB from a generator", "big:application", "/gen"),
    # Client-limited: a fresh connection per request (small send buffers,
    # the client's core saturated by 1 MiB reads), as uWSGI's --http-socket
    # serves every request anyway.
    Workload("big_close", "1 MiB response, one chunk, a connection per request", "big:application",
             close=True, extra=True),
    Workload("big_gen_close", "1 MiB response, 64 × 16 KiB generator, a connection per request",
             "big:application", "/gen", close=True, extra=True),
    Workload("upload", "1 MiB POST read by the app", "upload:application", post_bytes=MIB, target_us=200.0),
    Workload("upload_pieces", "1 MiB POST read by the app in 64 KiB pieces", "upload:application", "/pieces",
             post_bytes=MIB, extra=True),
    Workload("sleep", "`time.sleep(0.01)`, 32 threads, 256 conns", "sleep:application",
             connections=256, threads=32, target_us=35.0),
    Workload("pipeline", "hello, pipelined 16 requests per write", "hello:application", pipeline=16),
    Workload("idle1000", "hello while 1,000 idle keep-alive connections are held", "hello:application", idle=1000),
]
WORKLOAD_BY_NAME = {w.name: w for w in WORKLOADS}
# Issue 5's other targets, for ferrocorn on `hello`.
TARGET_RSS_MIB = 15.0
TARGET_P99_US = 1000.0

# --------------------------------------------------------------------------
# Servers. Same spirit for all: one worker process, access logs off, 32
# threads for the sleep workload, keep-alive as long as the run for idle1000.


def venv_bin(name):
    return str(VENV / "bin" / name)


def ferrocorn_binary():
    return Path(os.environ.get("FERROCORN_BIN", REPO / "target" / "release" / "ferrocorn"))


# The binaries actually run: copies taken at start (see main), so that a
# `cargo build` elsewhere during a long run cannot swap the binary under it.
RUN_COPY = {}


def cmd_ferrocorn(w, port, binary=None):
    binary = binary or str(ferrocorn_binary())
    cmd = [RUN_COPY.get(binary, binary), "-b", f"{HOST}:{port}", "-w", "1", "--threads", str(w.threads),
           "--log-level", "warning", "--virtualenv", str(VENV), "--chdir", str(APPS)]
    if w.idle:
        cmd += ["--keep-alive", "120", "--worker-connections", str(w.idle + 2 * w.connections)]
    return cmd + [w.app]


def cmd_gunicorn(worker_class):
    def cmd(w, port):
        c = [venv_bin("gunicorn"), "-b", f"{HOST}:{port}", "-w", "1", "-k", worker_class,
             "--log-level", "warning", "--chdir", str(APPS)]
        if worker_class == "gthread":
            c += ["--threads", str(w.threads)]
        if w.idle:
            c += ["--keep-alive", "120", "--worker-connections", str(w.idle + 2 * w.connections)]
        return c + [w.app]
    return cmd


def cmd_granian(w, port):
    return [venv_bin("granian"), "--interface", "wsgi", "--http", "1", "--host", HOST, "--port", str(port),
            "--workers", "1", "--runtime-threads", "1", "--blocking-threads", str(w.threads),
            "--no-access-log", "--log-level", "warning", "--working-dir", str(APPS), w.app]


def cmd_uwsgi(w, port):
    # --http-socket answers one request per connection (uWSGI's keep-alive
    # mode, --http11-socket, serves one connection at a time per thread and
    # starves the other 63); it says so with `Connection: close`, without
    # which wrk counts every close as a read error.
    c = [venv_bin("pyuwsgi"), "--http-socket", f"{HOST}:{port}", "--add-header", "Connection: close",
         "--master", "--processes", "1", "--single-interpreter", "--need-app", "--disable-logging",
         "--die-on-term", "--listen", "1024", "--chdir", str(APPS),
         "--wsgi-file", f"{w.module}.py", "--callable", w.callable]
    if w.threads > 1:
        c += ["--threads", str(w.threads)]
    return c


def cmd_bjoern(w, port):
    return [venv_bin("python"), str(BENCH / "bjoern_serve.py"), w.app, HOST, str(port)]


@dataclasses.dataclass(frozen=True)
class Server:
    name: str  # variant name, e.g. gunicorn-sync
    group: str  # what the report compares, e.g. gunicorn (best variant)
    command: object
    needs: str  # path that must exist
    skip: tuple = ()  # workloads this variant does not run
    note: str = ""


SERVERS = [
    Server("ferrocorn", "ferrocorn", cmd_ferrocorn, "", ()),
    # The sync worker has no threads (with --threads Gunicorn switches to
    # gthread itself), so the sleep workload is gthread's alone.
    Server("gunicorn-sync", "gunicorn", cmd_gunicorn("sync"), "gunicorn", ("sleep",)),
    Server("gunicorn-gthread", "gunicorn", cmd_gunicorn("gthread"), "gunicorn"),
    Server("granian", "granian", cmd_granian, "granian"),
    Server("uwsgi", "uwsgi", cmd_uwsgi, "pyuwsgi"),
    # bjoern is single-threaded: no thread pool for the sleep workload.
    Server("bjoern", "bjoern", cmd_bjoern, "python", ("sleep",)),
]
# `--baseline PATH` adds this one: another ferrocorn binary, run interleaved
# with the current one, for before/after figures from the same run.
BASELINE = Server("ferrocorn-base", "ferrocorn-base",
                  lambda w, port: cmd_ferrocorn(w, port, os.environ["FERROCORN_BASELINE_BIN"]), "")
SERVER_BY_NAME = {s.name: s for s in SERVERS + [BASELINE]}
ORDER = SERVERS[:1] + [BASELINE] + SERVERS[1:]
GROUPS = list(dict.fromkeys(s.group for s in ORDER))

# --------------------------------------------------------------------------
# /proc


def proc_stat(pid):
    """(session, utime+stime+cutime+cstime ticks, comm) of one process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    f = raw[raw.rindex(")") + 2 :].split()
    # fields after comm: state ppid pgrp session ... utime(11) stime cutime cstime
    return int(f[3]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]), comm


def session_pids(sid):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(entry)
            if st and st[0] == sid:
                pids.append(int(entry))
    return sorted(pids)


def session_cpu_ticks(sid):
    """CPU ticks of every process in the server's session. cutime/cstime are
    included so that a worker reaped during the run still counts."""
    total = 0
    for pid in session_pids(sid):
        st = proc_stat(pid)
        if st and st[0] == sid:
            total += st[1]
    return total


def session_memory(sid):
    """RSS and PSS (KiB) of every process in the session, summed, and per process."""
    procs = []
    for pid in session_pids(sid):
        st = proc_stat(pid)
        fields = {}
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:"):
                    fields[parts[0][:-1].lower()] = int(parts[1])
        except OSError:
            continue
        procs.append({"pid": pid, "comm": st[2] if st else "?", **fields})
    return {
        "rss_kib": sum(p.get("rss", 0) for p in procs),
        "pss_kib": sum(p.get("pss", 0) for p in procs),
        "procs": procs,
    }


# --------------------------------------------------------------------------
# Running one configuration


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_env():
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS",
                "FERROCORN_CMD_ARGS", "GRANIAN_WORKERS", "UWSGI_INI"):
        env.pop(key, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def wait_ready(proc, port, path, timeout):
    """Polls GET path until the server answers 200. Raises on exit or timeout."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return
            last = f"status {resp.status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout} s ({last})")


def stop_session(proc, sid, grace=5.0):
    """TERM to the whole process group, then KILL whatever of the session is left."""

    def reap():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)

    with contextlib.suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGTERM)
    reap()
    deadline = time.monotonic() + grace
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGKILL)
    reap()


def wrk_script(w):
    """The Lua script for wrk: request shape, plus a done() hook that prints
    the summary as one JSON line (wrk's own text is for humans)."""
    lua = []
    if w.close:
        lua += ['wrk.headers["Connection"] = "close"']
    if w.post_bytes:
        lua += ['wrk.method = "POST"',
                f'wrk.body = string.rep("x", {w.post_bytes})',
                'wrk.headers["Content-Type"] = "application/octet-stream"']
    if w.pipeline > 1:
        lua += ["init = function(args)",
                "  local r = {}",
                f"  for i = 1, {w.pipeline} do r[i] = wrk.format(nil, {json.dumps(w.path)}) end",
                "  req = table.concat(r)",
                "end",
                "request = function() return req end"]
    # Percentiles are computed here from wrk's buckets, not with
    # latency:percentile(), which returns 0 when wrk's coordinated-omission
    # correction has put samples below the recorded minimum (it does under
    # pipelining).
    lua += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        "  local n, total, vals, cnts = #latency, 0, {}, {}",
        "  for i = 1, n do local v, c = latency(i); vals[i] = v; cnts[i] = c; total = total + c end",
        "  local function pct(p)",
        "    local rank, acc = math.ceil(p / 100 * total), 0",
        "    for i = 1, n do acc = acc + cnts[i]; if acc >= rank then return vals[i] end end",
        "    return vals[n] or 0",
        "  end",
        '  io.write(string.format("BENCH_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, '
        '\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, '
        '\\"p50_us\\": %d, \\"p90_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d, \\"mean_us\\": %.1f}\\n",',
        "    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,",
        "    pct(50), pct(90), pct(99), latency.max, latency.mean))",
        "end",
    ]
    return "\n".join(lua) + "\n"


def run_wrk(w, port, seconds, script_path):
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{w.connections}", f"-d{seconds}s", "--latency",
           "-s", str(script_path), f"http://{HOST}:{port}{w.path}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            res = json.loads(line[len("BENCH_JSON "):])
            res["client_cpu_s"] = round(client_cpu, 3)
            return res
    raise RuntimeError(f"wrk gave no summary (status {out.returncode}): {out.stderr.strip()[-300:]}")


def start_holder(w, port):
    cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, str(BENCH / "idle_holder.py"), HOST, str(port),
           str(w.idle), w.path]
    holder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    line = read_line(holder, 60)
    return holder, json.loads(line)


def read_line(proc, timeout):
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError("idle holder did not report in time")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"idle holder exited ({proc.poll()})")
    return line


def release_holder(holder):
    try:
        holder.stdin.write("\n")
        holder.stdin.flush()
        info = json.loads(read_line(holder, 30))
    except (OSError, RuntimeError, ValueError):
        info = {}
    try:
        holder.wait(timeout=10)
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.wait()
    return info


def run_one(server, w, args, workdir):
    """Starts `server` for workload `w`, measures, stops. Returns one run record."""
    port = free_port()
    cmd = ["taskset", "-c", SERVER_CPU] + server.command(w, port)
    rec = {"server": server.name, "group": server.group, "workload": w.name, "port": port,
           "command": shlex.join(cmd), "loadavg_start": Path("/proc/loadavg").read_text().split()[0], "ok": False}
    log_path = workdir / f"{server.name}-{w.name}-{port}.log"
    script = workdir / f"{w.name}.lua"
    script.write_text(wrk_script(w))
    holder = None
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=APPS, env=server_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    sid = proc.pid  # session leader: taskset exec()s the server in place
    try:
        t0 = time.monotonic()
        wait_ready(proc, port, w.path, timeout=60)
        rec["startup_s"] = round(time.monotonic() - t0, 2)
        if args.warmup > 0:
            run_wrk(w, port, args.warmup, script)
        if w.idle:
            holder, rec["idle_held"] = start_holder(w, port)
        ticks0, t0 = session_cpu_ticks(sid), time.monotonic()
        res = run_wrk(w, port, args.duration, script)
        ticks1, t1 = session_cpu_ticks(sid), time.monotonic()
        rec.update(memory := session_memory(sid))
        if holder:
            rec["idle_held"].update(release_holder(holder))
            holder = None
        secs = res["duration_us"] / 1e6
        answered = res["requests"] - res["status"]
        cpu_s = (ticks1 - ticks0) / CLK_TCK
        rec.update({
            "ok": True,
            "requests": res["requests"],
            "answered": answered,
            "rps": round(res["requests"] / secs, 1) if secs else 0.0,
            "p50_us": res["p50_us"], "p90_us": res["p90_us"], "p99_us": res["p99_us"],
            "max_us": res["max_us"], "mean_us": res["mean_us"],
            "errors": {k: res[k] for k in ("status", "connect", "read", "write", "timeout")},
            "bytes": res["bytes"],
            "server_cpu_s": round(cpu_s, 3),
            "server_cpu_frac": round(cpu_s / (t1 - t0), 3),
            "client_cpu_s": res["client_cpu_s"],
            "client_cpu_frac": round(res["client_cpu_s"] / (t1 - t0), 3),
            "cpu_us_per_req": round(cpu_s * 1e6 / answered, 2) if answered else None,
            "nprocs": len(memory["procs"]),
        })
    except Exception as e:  # one failed configuration must not end the benchmark
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        if holder:
            holder.kill()
            holder.wait()
        stop_session(proc, sid)
        rec["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
        if not rec["ok"]:
            rec["log_tail"] = log_path.read_text(errors="replace")[-2000:]
    return rec


# --------------------------------------------------------------------------
# Report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_us(us):
    if us is None:
        return "—"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def fmt_num(x, digits=0):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def fmt_cpu(x):
    if x is None:
        return "—"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def summarize(runs):
    """Per (workload, variant): medians over the successful runs."""
    out = {}
    for r in runs:
        out.setdefault((r["workload"], r["server"]), []).append(r)
    summary = {}
    for key, rs in out.items():
        ok = [r for r in rs if r["ok"]]
        errs = {}
        for r in ok:
            for k, v in r["errors"].items():
                errs[k] = errs.get(k, 0) + v
        summary[key] = {
            "server": key[1], "group": rs[0]["group"], "runs": len(rs), "ok": len(ok),
            "rps": med([r["rps"] for r in ok]),
            "rps_min": min((r["rps"] for r in ok), default=None),
            "rps_max": max((r["rps"] for r in ok), default=None),
            # 0 means wrk recorded no latency at all (e.g. no pipelined
            # batch was ever answered whole): shown as "—", not as 0 µs.
            "p50_us": med([r["p50_us"] or None for r in ok]),
            "p99_us": med([r["p99_us"] or None for r in ok]),
            "cpu": med([r["cpu_us_per_req"] for r in ok]),
            "cpu_min": min((r["cpu_us_per_req"] for r in ok if r["cpu_us_per_req"] is not None), default=None),
            "cpu_max": max((r["cpu_us_per_req"] for r in ok if r["cpu_us_per_req"] is not None), default=None),
            "server_cpu_frac": med([r["server_cpu_frac"] for r in ok]),
            "client_cpu_frac": med([r["client_cpu_frac"] for r in ok]),
            "rss": med([r["rss_kib"] for r in ok]),
            "pss": med([r["pss_kib"] for r in ok]),
            "nprocs": med([r["nprocs"] for r in ok]),
            "errors": errs,
            "requests": sum(r["requests"] for r in ok),
            "idle_open": med([r.get("idle_held", {}).get("still_open") for r in ok]),
            "failures": [r.get("error", "") for r in rs if not r["ok"]],
        }
    return summary


def error_share(s):
    total = sum(s["errors"].values())
    return total / s["requests"] if s["requests"] else 1.0


def pick_best(summary, workload, group):
    """The group's variant with the lowest median CPU per request among those
    that ran with (almost) no errors; else the least-bad one."""
    cands = [s for (wl, _), s in summary.items() if wl == workload and s["group"] == group and s["ok"]]
    if not cands:
        return None
    clean = [s for s in cands if error_share(s) <= 0.001 and s["cpu"] is not None]
    pool = clean or cands
    return min(pool, key=lambda s: (s["cpu"] is None, s["cpu"] or 0, error_share(s)))


def top_rps(summary, workload):
    return max((s["rps"] or 0 for (wl, _), s in summary.items() if wl == workload), default=0)


def fmt_errors(s):
    parts = [f"{v:,} {k}" for k, v in s["errors"].items() if v]
    return ", ".join(parts) if parts else "0"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def render_report(meta, runs):
    summary = summarize(runs)
    workloads = [w for w in WORKLOADS if any(r["workload"] == w.name for r in runs)]
    groups = [g for g in GROUPS if any(r["group"] == g for r in runs)]
    L = []
    L.append(f"# ferrocorn benchmark, {meta['started']}")
    L.append("")
    L.append(f"Command: `{meta['command']}`  ")
    L.append(f"{meta['repeat']} run(s) × {meta['duration']} s per configuration (warm-up {meta['warmup']} s), "
             f"interleaved; server on CPU {SERVER_CPU}, one worker; `wrk -t1` on CPU {CLIENT_CPU}.  ")
    fc = meta["ferrocorn"]
    L.append(f"ferrocorn: `{fc['binary']}` built {fc.get('mtime', '?')}, sha256 {fc.get('sha256', '?')} "
             f"(HEAD {fc['git']} when the run started)"
             + (f"; baseline `{meta['baseline']['binary']}`, sha256 {meta['baseline']['sha256']}"
                if meta.get("baseline") else "") + ".  ")
    L.append(f"Peers: {meta['versions']}.  ")
    L.append(f"Machine: {meta['nproc']} CPUs, kernel {meta['kernel']}, load average {meta['loadavg_start']} at "
             f"start, {meta.get('loadavg_end', '?')} at end; {meta.get('elapsed_min', '?')} min.")
    L.append("")
    L.append("CPU µs/req is the server's CPU time (all its processes, user + system) per answered request: "
             "the figure that compares even when wrk, not the server, is the limit. "
             "Lower is better; ratios are ferrocorn ÷ peer (for CPU, < 1 means ferrocorn is cheaper; "
             "for req/s, > 1 means ferrocorn is faster).")
    L.append("")

    # Headline: CPU µs/request per workload, like the table.
    L.append("## Server CPU µs per answered request (median)")
    L.append("")
    head = ["workload"] + groups + ["target (ferrocorn)", "met?"]
    L.append("| " + " | ".join(head) + " |")
    L.append("| --- | " + " | ".join("---:" for _ in head[1:]) + " |")
    for w in workloads:
        row = [w.title]
        fc = None
        for g in groups:
            best = pick_best(summary, w.name, g)
            cell = fmt_cpu(best["cpu"]) if best else "—"
            if best and g == "gunicorn":
                cell += f" ({best['server'].split('-', 1)[1]})"
            if best and error_share(best) > 0.001:
                cell += " ⚠"
            if best and best["rps"] is not None and best["rps"] < 0.01 * top_rps(summary, w.name):
                cell += " ✗"
            if g == "ferrocorn" and best:
                fc = best["cpu"]
            row.append(cell)
        if w.target_us is not None:
            row.append(f"≤ {w.target_us:g}")
            row.append("—" if fc is None else ("yes" if fc <= w.target_us else f"no (×{fc / w.target_us:.2f})"))
        else:
            row += ["", ""]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("⚠ = errors in more than 0.1 % of requests; ✗ = under 1 % of the best server's req/s "
             "(the server stalls on this workload; its CPU figure rests on few requests). "
             "See the workload's table.")
    L.append("")

    # ferrocorn's other targets.
    fh = summary.get(("hello", "ferrocorn"))
    if fh and fh["ok"]:
        rss = fh["rss"] / 1024 if fh["rss"] else None
        L.append(f"ferrocorn on hello: RSS (master + worker) {rss:.1f} MiB (target ≤ {TARGET_RSS_MIB:g} MiB: "
                 f"{'met' if rss is not None and rss <= TARGET_RSS_MIB else 'missed'}); p99 {fmt_us(fh['p99_us'])} "
                 f"(target ≤ {fmt_us(TARGET_P99_US)}: "
                 f"{'met' if fh['p99_us'] and fh['p99_us'] <= TARGET_P99_US else 'missed'}).")
        L.append("")

    # Per workload detail.
    L.append("## Per workload")
    for w in workloads:
        L.append("")
        L.append(f"### {w.title} (`{w.name}`)")
        L.append("")
        extra = " | idle held" if w.idle else ""
        L.append("| server | req/s (median) | req/s min–max | p50 | p99 | errors | CPU µs/req (min–max) "
                 f"| server CPU | wrk CPU | RSS MiB | PSS MiB | procs{extra} | runs |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
                 + (" ---: |" if w.idle else "") + " ---: |")
        order = [x.name for x in ORDER]
        for (wl, name), s in sorted(summary.items(), key=lambda kv: order.index(kv[0][1])):
            if wl != w.name:
                continue
            if not s["ok"]:
                L.append(f"| {name} | failed | | | | | | | | | | |" + (" |" if w.idle else "")
                         + f" 0/{s['runs']} |")
                continue
            cells = [
                name, fmt_num(s["rps"]), f"{fmt_num(s['rps_min'])}–{fmt_num(s['rps_max'])}",
                fmt_us(s["p50_us"]), fmt_us(s["p99_us"]), fmt_errors(s),
                f"{fmt_cpu(s['cpu'])} ({fmt_cpu(s['cpu_min'])}–{fmt_cpu(s['cpu_max'])})",
                f"{s['server_cpu_frac'] * 100:.0f} %", f"{s['client_cpu_frac'] * 100:.0f} %",
                f"{s['rss'] / 1024:.1f}", f"{s['pss'] / 1024:.1f}", f"{s['nprocs']:g}",
            ]
            if w.idle:
                cells.append("—" if s["idle_open"] is None else f"{s['idle_open']:g}")
            cells.append(f"{s['ok']}/{s['runs']}")
            L.append("| " + " | ".join(cells) + " |")
        fc = pick_best(summary, w.name, "ferrocorn")
        if fc:
            parts = []
            for g in groups:
                if g == "ferrocorn":
                    continue
                peer = pick_best(summary, w.name, g)
                if not peer:
                    continue
                rr, cr = ratio(fc["rps"], peer["rps"]), ratio(fc["cpu"], peer["cpu"])
                label = peer["server"] if g == "gunicorn" else g
                parts.append(f"{label}: req/s ×{rr:.2f}, CPU/req ×{cr:.2f}" if rr and cr else f"{label}: —")
            if parts:
                L.append("")
                L.append("ferrocorn ÷ peer: " + "; ".join(parts) + ".")
        fails = [(n, f) for (wl, n), s in summary.items() if wl == w.name for f in s["failures"]]
        for n, f in fails[:5]:
            L.append("")
            L.append(f"- {n} failed a run: {f}")
    L.append("")
    L.append("Server CPU / wrk CPU: share of one core each used during the measured run "
             "(≈ 100 % for wrk means the load generator was the limit).")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------
# Main


def git_describe():
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock"], capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def ensure_ferrocorn(rebuild):
    binary = ferrocorn_binary()
    if rebuild or not binary.exists():
        if "FERROCORN_BIN" in os.environ:
            sys.exit(f"run.py: {binary} is missing")
        print("run.py: cargo build --release", flush=True)
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True, timeout=3600)
    st = binary.stat()
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:12]
    return {"binary": str(binary), "git": git_describe() if "FERROCORN_BIN" not in os.environ else "external",
            "mtime": datetime.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds"),
            "sha256": digest}


def available(server):
    if server.name in ("ferrocorn", BASELINE.name):
        return True, ""
    exe = VENV / "bin" / server.needs
    if not exe.exists():
        return False, f"{exe} missing (run bench/setup.sh)"
    if server.name == "bjoern":
        ok = subprocess.run([str(exe), "-c", "import bjoern"], capture_output=True).returncode == 0
        return ok, "" if ok else "bjoern is not importable in bench/.venv (did its build fail?)"
    return True, ""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="all",
                   help="comma-separated: " + ", ".join(s.name for s in SERVERS)
                   + " (or a group: gunicorn); default all")
    p.add_argument("--workloads", default="all",
                   help="comma-separated: " + ", ".join(w.name for w in WORKLOADS)
                   + "; default all (all but " + ", ".join(w.name for w in WORKLOADS if w.extra) + ")")
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (default 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds of wrk per run (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each measured run (default 2)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 run × 3 s each, 1 s warm-up")
    p.add_argument("--rebuild", action="store_true", help="cargo build --release before running")
    p.add_argument("--baseline", metavar="PATH",
                   help="also run this ferrocorn binary (as ferrocorn-base), interleaved, for before/after")
    p.add_argument("--label", default="", help="a word for the output file names, e.g. before-writev")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    a = p.parse_args(argv)
    if a.quick:
        a.repeat, a.duration, a.warmup = 1, 3, 1
    names = []
    for tok in (s.strip() for s in a.servers.split(",")):
        if tok == "all":
            names += [s.name for s in SERVERS]
        elif tok in SERVER_BY_NAME:
            names.append(tok)
        elif tok in GROUPS:
            names += [s.name for s in SERVERS if s.group == tok]
        elif tok:
            p.error(f"unknown server {tok!r}")
    if a.baseline:
        if not Path(a.baseline).is_file():
            p.error(f"--baseline: {a.baseline} is not a file")
        os.environ["FERROCORN_BASELINE_BIN"] = str(Path(a.baseline).resolve())
        names.insert(names.index("ferrocorn") + 1 if "ferrocorn" in names else 0, BASELINE.name)
    a.server_list = [SERVER_BY_NAME[n] for n in dict.fromkeys(names)]
    wl = []
    for tok in (s.strip() for s in a.workloads.split(",")):
        if tok == "all":
            wl += [w.name for w in WORKLOADS if not w.extra]
        elif tok in WORKLOAD_BY_NAME:
            wl.append(tok)
        elif tok:
            p.error(f"unknown workload {tok!r}")
    a.workload_list = [WORKLOAD_BY_NAME[n] for n in dict.fromkeys(wl)]
    if a.repeat < 1 or a.duration < 1:
        p.error("--repeat and --duration must be at least 1")
    return a


def main(argv):
    args = parse_args(argv)
    if os.cpu_count() < 2:
        sys.exit("run.py needs two CPUs: the server on one, wrk on the other")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    servers = []
    for s in args.server_list:
        ok, why = available(s)
        if ok:
            servers.append(s)
        else:
            print(f"run.py: skipping {s.name}: {why}", file=sys.stderr)
    plan = []  # (round, workload, server)
    for rnd in range(args.repeat):
        for w in args.workload_list:
            eligible = [s for s in servers if w.name not in s.skip]
            k = rnd % len(eligible) if eligible else 0
            for s in eligible[k:] + eligible[:k]:
                plan.append((rnd, w, s))
    per_run = args.duration + args.warmup + 3.0
    print(f"run.py: {len(plan)} runs × ~{per_run:.0f} s ≈ {len(plan) * per_run / 60:.0f} min", flush=True)
    if args.dry_run:
        for rnd, w, s in plan:
            print(f"  round {rnd + 1} {w.name:10} {shlex.join(s.command(w, 0))}", flush=True)
        return 0

    fc = ensure_ferrocorn(args.rebuild) if any(s.name == "ferrocorn" for s in servers) else \
        {"binary": "-", "git": "-"}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{args.label}" if args.label else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{stamp}.json", RESULTS / f"{stamp}.md"
    versions_file = RESULTS / "versions.txt"
    versions = ", ".join(line.strip() for line in versions_file.read_text().splitlines()[1:6]) \
        if versions_file.exists() else "unknown (run bench/setup.sh)"
    meta = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": ("python3.11 bench/run.py " + shlex.join(argv)).strip(),
        "repeat": args.repeat, "duration": args.duration, "warmup": args.warmup,
        "servers": [s.name for s in servers], "workloads": [w.name for w in args.workload_list],
        "ferrocorn": fc, "versions": versions,
        "baseline": {"binary": args.baseline,
                     "sha256": hashlib.sha256(Path(args.baseline).read_bytes()).hexdigest()[:12]}
        if args.baseline else None, "nproc": os.cpu_count(), "kernel": os.uname().release,
        "clk_tck": CLK_TCK, "loadavg_start": Path("/proc/loadavg").read_text().split()[0],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
    }
    runs = []
    t_start = time.monotonic()

    def save():
        meta["elapsed_min"] = round((time.monotonic() - t_start) / 60, 1)
        meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
        json_path.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="ferrocorn-bench-") as tmp:
        for name, src in (("ferrocorn", str(ferrocorn_binary())),
                          ("ferrocorn-base", os.environ.get("FERROCORN_BASELINE_BIN"))):
            if src and any(s.group == name for s in servers):
                # Each copy in a build tree's layout of its own, with the
                # native modules its workers load when they were built
                # beside it (target/release/libferrocorn.so, the stable-ABI
                # one; target/native/, one per CPython: make native-modules).
                d = Path(tmp) / name / "release"
                d.mkdir(parents=True)
                module = Path(src).parent / "libferrocorn.so"
                if module.is_file():
                    shutil.copy2(module, d / module.name)
                native = Path(src).parent.parent / "native"
                if module.is_file() and native.is_dir():
                    shutil.copytree(native, d.parent / "native")
                RUN_COPY[src] = str(shutil.copy2(src, d / "ferrocorn"))
        try:
            for i, (rnd, w, s) in enumerate(plan, 1):
                rec = run_one(s, w, args, Path(tmp))
                rec["round"] = rnd + 1
                runs.append(rec)
                save()
                if rec["ok"]:
                    msg = (f"{rec['rps']:>10,.0f} req/s  p99 {fmt_us(rec['p99_us']):>9}  "
                           f"cpu {fmt_cpu(rec['cpu_us_per_req']):>7} µs/req  "
                           f"rss {rec['rss_kib'] / 1024:6.1f} MiB  err {sum(rec['errors'].values())}")
                else:
                    msg = "FAILED " + rec.get("error", "")
                print(f"[{i:3}/{len(plan)}] r{rnd + 1} {w.name:10} {s.name:17} {msg}", flush=True)
        except KeyboardInterrupt:
            print("run.py: interrupted; reporting what was measured", file=sys.stderr)
    save()
    report = render_report(meta, runs)
    md_path.write_text(report)
    print()
    print(report)
    print(f"run.py: wrote {json_path.relative_to(REPO)} and {md_path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
