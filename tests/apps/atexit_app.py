"""Registers an atexit handler that appends "bye <pid>" to $ATEXIT_FILE:
a worker that stops gracefully must run it, as a Python process that ends
with sys.exit() would (logging handlers and error reporters flush there)."""

import atexit
import os


def _bye():
    with open(os.environ["ATEXIT_FILE"], "a") as f:
        f.write("bye %d\n" % os.getpid())


atexit.register(_bye)


def app(environ, start_response):
    body = b"%d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
