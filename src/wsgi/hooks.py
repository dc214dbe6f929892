# Gunicorn's server hooks (the callables of a gunicorn.conf.py), for
# ferrocorn's arbiter and the workers it forks (docs/architecture.md, "Server
# hooks"). Loaded by the native module as `_ferrocorn_hooks`; the Rust side
# calls the methods of `Hooks`, which build the objects Gunicorn passes
# (server, worker, req, resp) with the attributes hooks use, and never let a
# hook's exception out: it is logged with its traceback.
#
# Must run on every CPython from 3.9.
import inspect
import os
import sys
import traceback
import urllib.parse

# Each hook's arity as Gunicorn's `validate_callable` checks it (-1: any;
# post_request takes 2, 3 or 4 arguments).
ARITY = {
    "on_starting": 1,
    "on_reload": 1,
    "when_ready": 1,
    "pre_fork": 2,
    "post_fork": 2,
    "post_worker_init": 1,
    "worker_int": 1,
    "worker_abort": 1,
    "pre_exec": 1,
    "pre_request": 2,
    "post_request": -1,
    "child_exit": 2,
    "worker_exit": 2,
    "nworkers_changed": 3,
    "on_exit": 1,
}

# Levels of the Rust log (tracing), by the names of Python's logging.
LEVELS = {"critical": "error", "error": "error", "warning": "warn", "info": "info", "debug": "debug"}


class ConfigError(Exception):
    """A hook the configuration file defines that cannot be called as
    Gunicorn calls it (one line: the setting, the file and why)."""


class Config(object):
    """`server.cfg` and `worker.cfg`: every setting by Gunicorn's name, as
    the master resolved it (`cfg.workers`, `cfg.bind`, `cfg.timeout`...)."""

    def __init__(self, values):
        self.__dict__.update(values)
        self.settings = dict(values)

    def __getattr__(self, name):
        raise AttributeError("No configuration setting for: %s" % name)


class Log(object):
    """`server.log` and `worker.log`: Gunicorn's logger methods, into
    ferrocorn's error log."""

    def __init__(self, emit):
        self._emit = emit

    def _log(self, level, msg, args):
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = "%s %r" % (msg, args)
        self._emit(LEVELS[level], text)

    def critical(self, msg, *args, **kwargs):
        self._log("critical", msg, args)

    def error(self, msg, *args, **kwargs):
        self._log("error", msg, args)

    def warning(self, msg, *args, **kwargs):
        self._log("warning", msg, args)

    warn = warning

    def info(self, msg, *args, **kwargs):
        self._log("info", msg, args)

    def debug(self, msg, *args, **kwargs):
        self._log("debug", msg, args)

    def exception(self, msg, *args, **kwargs):
        self._log("error", "%s\n%s" % (msg, traceback.format_exc().rstrip()), args)

    def log(self, lvl, msg, *args, **kwargs):
        import logging

        name = logging.getLevelName(lvl).lower() if isinstance(lvl, int) else str(lvl).lower()
        self._log(name if name in LEVELS else "info", msg, args)

    def reopen_files(self):
        pass

    def close_on_exec(self):
        pass


class Server(object):
    """The `server` (Gunicorn's arbiter) hooks receive. `pid` is the
    master's, as `ps` and the pid file show it."""

    master_name = "Master"

    def __init__(self, pid, cfg, log, num_workers, proc_name):
        self.pid = pid
        self.master_pid = 0
        self.cfg = cfg
        self.log = log
        self.num_workers = num_workers
        self.proc_name = proc_name
        self.app = None
        self.WORKERS = {}


class Worker(object):
    """The `worker` hooks receive. `pid` is "[booting]" until forked, as in
    Gunicorn; `age` counts the workers this arbiter forked."""

    def __init__(self, age, ppid, cfg, log):
        self.age = age
        self.ppid = ppid
        self.pid = "[booting]"
        self.cfg = cfg
        self.log = log
        self.alive = True
        self.booted = False
        self.aborted = False
        self.nr = 0
        self.timeout = cfg.__dict__.get("timeout")
        self.max_requests = cfg.__dict__.get("max_requests")
        self.app = None

    def __str__(self):
        return "<Worker %s>" % self.pid


def split_request_uri(uri):
    """As Gunicorn's `util.split_request_uri`: a target starting with "//"
    is a path, not a network location."""
    if uri.startswith("//"):
        parts = urllib.parse.urlsplit("." + uri)
        return parts._replace(path=parts.path[1:])
    return urllib.parse.urlsplit(uri)


class Request(object):
    """The `req` of pre_request and post_request: the request head."""

    def __init__(self, method, uri, version, headers, scheme):
        self.method = method
        self.uri = uri
        self.version = version
        self.headers = headers
        self.trailers = []
        self.scheme = scheme
        try:
            parts = split_request_uri(uri)
        except ValueError:
            parts = urllib.parse.SplitResult("", "", uri, "", "")
        self.path = parts.path or ""
        self.query = parts.query or ""
        self.fragment = parts.fragment or ""
        self.body = None


class Response(object):
    """The `resp` of a four-argument post_request: what was sent."""

    def __init__(self, status, headers, sent, version):
        self.status = status
        self.headers = headers
        self.sent = sent
        self.version = version
        try:
            self.status_code = int(status.split(None, 1)[0])
        except (ValueError, IndexError, AttributeError):
            self.status_code = None
        self.response_length = sent


def arity(f):
    """Positional parameters, as Gunicorn's `util.get_arity` counts them."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in inspect.signature(f).parameters.values() if p.kind in kinds)


def resolve(name, value, where):
    """The callable a hook setting names (a callable, or Gunicorn's
    "module.function" string), checked for Gunicorn's arity."""
    if isinstance(value, str):
        mod_name, dot, obj_name = value.rpartition(".")
        if not dot:
            raise ConfigError("%s: %r is not an import string (module.function) (in %s)" % (name, value, where))
        try:
            value = getattr(__import__(mod_name, fromlist=[obj_name]), obj_name)
        except (ImportError, AttributeError) as e:
            raise ConfigError("%s: cannot load %r: %s (in %s)" % (name, value, e, where))
    if not callable(value):
        raise ConfigError("%s: value is not callable: %r (in %s)" % (name, value, where))
    want = ARITY[name]
    try:
        got = arity(value)
    except (TypeError, ValueError):
        return value
    if name == "post_request":
        if got == 4:
            return value
        if got == 3:
            return lambda worker, req, environ, resp: value(worker, req, environ)
        if got == 2:
            return lambda worker, req, environ, resp: value(worker, req)
        raise ConfigError("post_request: the hook must take 2, 3 or 4 arguments, not %d (in %s)" % (got, where))
    if got != want:
        raise ConfigError("%s: the hook must take %d argument(s), not %d (in %s)" % (name, want, got, where))
    return value


def read_config(location):
    """Run a gunicorn.conf.py (a path, or python:MODULE) as Gunicorn does
    and return its namespace."""
    if location.startswith("python:"):
        import importlib

        module = location[len("python:"):]
        if module in sys.modules:
            return vars(importlib.reload(sys.modules[module]))
        return vars(importlib.import_module(module))
    namespace = {"__builtins__": __builtins__, "__name__": "__config__", "__file__": location,
                 "__doc__": None, "__package__": None}
    with open(location, "rb") as f:
        code = compile(f.read(), location, "exec")
    exec(code, namespace)
    return namespace


class Hooks(object):
    """The hooks of one configuration file and the objects they receive.
    In the arbiter it holds the `server`; in a worker also that worker."""

    def __init__(self, location, cfg, master, num_workers, proc_name, emit):
        self.location = location
        self.log = Log(emit)
        self.cfg = Config(cfg)
        self.server = Server(master, self.cfg, self.log, num_workers, proc_name)
        self.hooks = {}
        self.load()
        self.worker = None
        self.by_slot = {}

    def load(self):
        """Run the file and take its hooks; ConfigError if one is bad."""
        where = self.location
        namespace = read_config(self.location)
        hooks = {}
        for name in ARITY:
            value = namespace.get(name)
            if value is not None:
                hooks[name] = resolve(name, value, where)
        self.hooks = hooks

    def set_environment(self, env):
        for key, value in env:
            os.environ[key] = value
        return True

    def set_cfg(self, cfg_json):
        import json

        self.cfg.__dict__.clear()
        self.cfg.__init__(json.loads(cfg_json))
        return True

    def defines(self, name):
        return name in self.hooks

    def call(self, name, *args):
        """Run one hook; False if it raised (logged with its traceback)."""
        hook = self.hooks.get(name)
        if hook is None:
            return True
        try:
            hook(*args)
            return True
        except SystemExit as e:
            self.log.error("The %s hook called sys.exit(%s)" % (name, e.code))
            return False
        except BaseException:
            self.log.exception("Exception in the %s hook" % name)
            return False

    # The arbiter's hooks.

    def on_starting(self):
        return self.call("on_starting", self.server)

    def when_ready(self):
        return self.call("when_ready", self.server)

    def on_reload(self, new, old):
        """HUP: run the file again (as Gunicorn's arbiter reloads its
        configuration), then nworkers_changed and on_reload. A file that is
        now broken keeps the hooks it had."""
        try:
            self.load()
        except Exception as e:
            self.log.error("Reload: cannot run %s again (%s: %s); keeping its hooks"
                           % (self.location, type(e).__name__, e))
        self.nworkers_changed(new, old)
        return self.call("on_reload", self.server)

    def pre_exec(self):
        return self.call("pre_exec", self.server)

    def on_exit(self):
        return self.call("on_exit", self.server)

    def nworkers_changed(self, new, old):
        self.server.num_workers = new
        return self.call("nworkers_changed", self.server, new, old)

    def pre_fork(self, slot, num_workers, age):
        """Before forking the worker for `slot`: a new Worker, handed to
        pre_fork; returned for post_fork in the child."""
        self.server.num_workers = num_workers
        worker = Worker(age, self.server.pid, self.cfg, self.log)
        self.by_slot[slot] = worker
        self.call("pre_fork", self.server, worker)
        return worker

    def child_exit(self, slot, pid, age):
        # The object pre_fork had, unless a --preload zygote forked it.
        worker = self.by_slot.pop(slot, None) or Worker(age, self.server.pid, self.cfg, self.log)
        worker.pid = pid
        self.server.WORKERS.pop(pid, None)
        return self.call("child_exit", self.server, worker)

    def forked(self, slot, pid):
        """The arbiter learnt the pid of the worker it forked for `slot`."""
        worker = self.by_slot.get(slot)
        if worker is not None:
            worker.pid = pid
            self.server.WORKERS[pid] = worker

    # A worker's hooks, in the worker.

    def post_fork(self, worker):
        worker.pid = os.getpid()
        self.worker = worker
        self.server.WORKERS = {worker.pid: worker}
        return self.call("post_fork", self.server, worker)

    def post_worker_init(self, app):
        worker = self.worker
        if worker is None:
            return True
        worker.app = app
        ok = self.call("post_worker_init", worker)
        # As Gunicorn's worker: booted once the hook has run.
        worker.booted = True
        return ok

    def worker_int(self):
        if self.worker is not None:
            self.worker.alive = False
            return self.call("worker_int", self.worker)
        return True

    def worker_abort(self):
        if self.worker is not None:
            self.worker.alive = False
            self.worker.aborted = True
            return self.call("worker_abort", self.worker)
        return True

    def catch_abort(self):
        """With a worker_abort hook: SIGABRT (the master's request timeout)
        runs it in the main thread, as Gunicorn's worker does, then writes
        every thread's traceback, runs worker_exit and ends the worker with
        status 1."""
        import faulthandler
        import signal

        def on_abort(signum, frame):
            self.worker_abort()
            faulthandler.dump_traceback(all_threads=True)
            self.worker_exit()
            sys.stderr.flush()
            os._exit(1)

        signal.signal(signal.SIGABRT, on_abort)
        return True

    def worker_exit(self):
        if self.worker is not None:
            self.worker.alive = False
            return self.call("worker_exit", self.server, self.worker)
        return True

    def make_request(self, method, uri, version, headers, scheme):
        if self.worker is not None:
            self.worker.nr += 1
        return Request(method, uri, version, headers, scheme)

    def pre_request(self, method, uri, version, headers, scheme):
        req = self.make_request(method, uri, version, headers, scheme)
        self.call("pre_request", self.worker, req)
        return req

    def post_request(self, req, environ, status, headers, sent):
        resp = Response(status, headers, sent, req.version)
        return self.call("post_request", self.worker, req, environ, resp)

