"""sleep: `time.sleep(0.01)` then a 13-byte body.

Stands for an I/O-bound app (a database call): served with 32 threads in the
one worker and 256 connections, it measures how cheaply a server hands
requests to threads and whether it releases the GIL while they wait.
"""

import time

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    time.sleep(0.01)
    start_response("200 OK", list(HEADERS))
    return [BODY]


app = application
