"""Demo WSGI app for the systemd tests (stdlib only).

GET /           "hello from demo version=... pid=..."  (pid = the worker's)
GET /sleep?s=N  sleeps N seconds (at most 30), then answers; an in-flight
                request for the stop/restart checks
GET /env        the worker's environment variable names, one per line; the
                checks look for NOTIFY_SOCKET, LISTEN_* and WATCHDOG_* there
GET /print?t=T  print()s "demo print T" and logs "demo logging T" with the
                logging module: both must reach the journal
anything else   404

The version string is a module constant, so changing this file and reloading
(HUP) proves that the new generation re-imported the code. If a file
named `import_delay` sits next to this module, the import sleeps that many
seconds: it widens the reload window so that a server which signals
readiness before its workers have imported the app is caught.
"""

import logging
import os
import time
import urllib.parse

VERSION = "v1"

_here = os.path.dirname(os.path.abspath(__file__))
try:
    with open(os.path.join(_here, "import_delay")) as f:
        time.sleep(float(f.read().strip() or 0))
except FileNotFoundError:
    pass


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    status = "200 OK"
    if path == "/":
        body = f"hello from demo version={VERSION} pid={os.getpid()}\n"
    elif path == "/sleep":
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        seconds = min(float(query.get("s", ["1"])[0]), 30.0)
        time.sleep(seconds)
        body = f"slept {seconds} version={VERSION} pid={os.getpid()}\n"
    elif path == "/print":
        token = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("t", ["-"])[0]
        print(f"demo print {token}")
        logging.getLogger("demo").warning("demo logging %s", token)
        body = f"printed {token}\n"
    elif path == "/env":
        body = "".join(f"{name}\n" for name in sorted(os.environ))
    else:
        status = "404 Not Found"
        body = f"not found: {path}\n"
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
