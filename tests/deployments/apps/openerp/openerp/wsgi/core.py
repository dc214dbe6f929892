"""`openerp.wsgi.core`: the WSGI entry point and the server hooks its
gunicorn.conf.py names, as in OpenERP 6.1."""
import json
import os

import openerp


def _write(line):
    path = openerp.tools.config.get("hooks_log")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def on_starting(server):
    """Initialise the library in the master, before any worker is forked."""
    openerp.multi_process = True
    openerp.service.start_internal()
    _write("on_starting pid=%d master=%s" % (os.getpid(), server.pid))


def when_ready(server):
    _write("when_ready pid=%d workers=%d" % (os.getpid(), server.num_workers))


def pre_request(worker, req):
    _write("pre_request pid=%d %s %s" % (worker.pid, req.method, req.path))


def post_request(worker, req, environ, resp):
    _write("post_request pid=%d %s %s" % (worker.pid, req.path, resp.status))


def application(environ, start_response):
    if not openerp.multi_process or openerp.service.initialized_in is None:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"openerp: the library was not initialised (no on_starting)\n"]
    body = json.dumps({
        "initialized_in": openerp.service.initialized_in,
        "worker": os.getpid(),
        "addons_path": openerp.tools.config["addons_path"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
