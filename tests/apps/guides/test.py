"""`test:app`, as in Gunicorn's proxy guide: answers which worker it is and
what the environ says about the client and the scheme."""
import json
import os


def app(environ, start_response):
    body = json.dumps({
        "app": "test",
        "pid": os.getpid(),
        "REMOTE_ADDR": environ.get("REMOTE_ADDR"),
        "url_scheme": environ["wsgi.url_scheme"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
