"""`main:application` of the Gunicorn docs' runit example."""
import os
import time


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(2)
    body = ("runit app, worker %d of master %d\n" % (os.getpid(), os.getppid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
