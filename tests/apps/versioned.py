"""Serves the version string read at import from $VERSION_FILE.

The reload tests rewrite the file and send HUP: the new generation of
workers imports this module again and must serve the new string. A version
of "broken" makes the import fail, for the failed-reload test. "/slow"
answers after $SLOW seconds (default 0.2), to keep requests in flight.
"""

import os
import time

with open(os.environ["VERSION_FILE"]) as f:
    VERSION = f.read().strip()

if VERSION == "broken":
    raise RuntimeError("this version of the app does not import")

time.sleep(float(os.environ.get("SLOW_IMPORT", "0")))


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(os.environ.get("SLOW", "0.2")))
    body = ("%s pid=%d\n" % (VERSION, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
