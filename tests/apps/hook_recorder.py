"""A gunicorn.conf.py whose every server hook appends one JSON line to
$HOOK_LOG: the hook's name, the side it ran on ("master": Gunicorn's
master or ferrocorn's arbiter; "worker") and what it saw of its arguments.
tests/settings/hooks.rs runs it under ferrocorn and Gunicorn 27 through the
same life cycle and compares the two records."""
import json
import os

workers = 2
timeout = 2
graceful_timeout = 5

# Set by post_fork in the worker it ran in.
_this_worker = {"pid": None}


def _side():
    return "worker" if _this_worker["pid"] == os.getpid() else "master"


def _server(server):
    return {
        "pid": type(server.pid).__name__,
        "num_workers": server.num_workers,
        "proc_name": server.proc_name,
        "cfg.workers": server.cfg.workers,
        "cfg.timeout": server.cfg.timeout,
        "log": all(callable(getattr(server.log, m)) for m in ("info", "warning", "error", "exception", "debug")),
    }


def _worker(worker, server=None):
    if worker.pid == "[booting]":
        pid = "[booting]"
    elif worker.pid == os.getpid():
        pid = "self"
    else:
        pid = type(worker.pid).__name__
    seen = {"age": worker.age, "pid": pid, "alive": worker.alive, "booted": worker.booted,
            "cfg.workers": worker.cfg.workers}
    seen["log"] = callable(worker.log.info)
    if server is not None:
        seen["ppid is server.pid"] = worker.ppid == server.pid
    return seen


def _record(name, **seen):
    line = json.dumps({"hook": name, "side": _side(), "pid": os.getpid(), "seen": seen}, sort_keys=True)
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(line + "\n")


def on_starting(server):
    _record("on_starting", server=_server(server))


def on_reload(server):
    _record("on_reload", server=_server(server))


def when_ready(server):
    _record("when_ready", server=_server(server))


def pre_fork(server, worker):
    _record("pre_fork", server=_server(server), worker=_worker(worker, server))


def post_fork(server, worker):
    _this_worker["pid"] = worker.pid
    _record("post_fork", server=_server(server), worker=_worker(worker, server))


def post_worker_init(worker):
    _record("post_worker_init", worker=_worker(worker))


def worker_int(worker):
    _record("worker_int", worker=_worker(worker))


def worker_abort(worker):
    _record("worker_abort", worker=_worker(worker))


def pre_exec(server):
    _record("pre_exec", server=_server(server))


def pre_request(worker, req):
    _record("pre_request", worker=_worker(worker), req={
        "method": req.method, "uri": req.uri, "path": req.path, "query": req.query,
        "version": list(req.version), "headers": sorted(n for n, _ in req.headers)})


def post_request(worker, req, environ, resp):
    _record("post_request", worker=_worker(worker), req={"path": req.path},
            environ={k: environ[k] for k in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING")},
            resp={"status": resp.status, "status_code": resp.status_code, "sent": resp.sent,
                  "headers": sorted(n.lower() for n, _ in resp.headers)})


def child_exit(server, worker):
    _record("child_exit", server=_server(server), worker=_worker(worker, server))


def worker_exit(server, worker):
    _record("worker_exit", server=_server(server), worker=_worker(worker, server))


def nworkers_changed(server, new, old):
    # Gunicorn's first call comes from its arbiter's __init__, before it
    # has a pid or a proc_name: only num_workers is sure to be there.
    _record("nworkers_changed", num_workers=server.num_workers, new=new, old=old)


def on_exit(server):
    _record("on_exit", server=_server(server))
