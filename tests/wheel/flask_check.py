#!/usr/bin/env python3
"""Flask through a wheel's ferrocorn, checked from outside (standard library).

Starts PREFIX/bin/ferrocorn (the venv's, installed from the wheel) on a UNIX
socket with examples/flask_app.py, then checks what tests/integration.rs's
`flask_app_serves_from_virtualenv` checks: the form page, the POST/redirect/
GET round trip, JSON from the app showing sys.prefix is the venv, a
streamed chunked response, and that Flask was imported from the venv. Used
inside the systemd harness's Debian 13 container (tests/systemd/inside.sh,
check 9), where the Rust test binary does not run.

    flask_check.py VENV EXAMPLES_DIR TESTS_APPS_DIR

Prints PASS/FAIL lines; exits 1 if anything failed. Bounded: every request
has a timeout and the server gets 30 s to start.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def request(sock, method, target, body=None, headers=None):
    c = UnixConnection(sock)
    try:
        c.request(method, target, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


failed = 0


def check(what, ok, detail=""):
    global failed
    print("%s: %s%s" % ("PASS" if ok else "FAIL", what, "" if ok else " (%s)" % detail))
    failed += not ok


def serve(venv, chdir, app, sock, log):
    proc = subprocess.Popen([os.path.join(venv, "bin", "ferrocorn"), "--chdir", chdir,
                             "-b", "unix:" + sock, app], stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            request(sock, "GET", "/")
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("FAIL: %s did not start; log:\n%s" % (app, open(log.name).read()))


def main():
    venv, examples, apps = (os.path.realpath(a) for a in sys.argv[1:4])
    tmp = tempfile.mkdtemp(prefix="flask-check-")
    sock = os.path.join(tmp, "flask.sock")
    with open(os.path.join(tmp, "server.log"), "w") as log:
        proc = serve(venv, examples, "flask_app:app", sock, log)
        try:
            status, _, body = request(sock, "GET", "/")
            check("GET / is the form page", status == 200 and b"<form" in body and b"ferrocorn" in body,
                  status)
            status, headers, _ = request(sock, "POST", "/greet", b"name=Ada+Lovelace",
                                         {"Content-Type": "application/x-www-form-urlencoded"})
            location = headers.get("Location", "")
            check("POST /greet redirects (303) to /hello/Ada%20Lovelace",
                  status == 303 and location.endswith("/hello/Ada%20Lovelace"), (status, location))
            status, _, body = request(sock, "GET", "/hello/Ada%20Lovelace")
            check("the redirect's target greets", status == 200 and b"Hello, Ada Lovelace!" in body, body[:80])
            status, _, body = request(sock, "GET", "/api/info")
            info = json.loads(body) if status == 200 else {}
            check("/api/info: served by ferrocorn, sys.prefix is the venv",
                  info.get("server") == "ferrocorn" and os.path.realpath(info.get("prefix", "")) == venv,
                  info)
            status, headers, body = request(sock, "GET", "/stream?n=4")
            check("/stream is chunked, 4 parts",
                  status == 200 and headers.get("Transfer-Encoding") == "chunked"
                  and len(body.decode().splitlines()) == 4, (status, headers, body[:80]))
        finally:
            proc.terminate()
            proc.wait(30)
        proc = serve(venv, apps, "flask_probe:app", sock, log)
        try:
            status, _, body = request(sock, "GET", "/")
            probe = json.loads(body) if status == 200 else {}
            check("Flask is imported from the venv", os.path.realpath(probe.get("flask", "")).startswith(venv),
                  probe)
            print("    python %s at %s" % (probe.get("python"), probe.get("executable")))
        finally:
            proc.terminate()
            proc.wait(30)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
