"""`gunicornapp:application`, as in the guide that runs `--threads 4`."""
import threading
import time


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(0.5)
    body = ("gunicornapp on %s\n" % threading.current_thread().name).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
