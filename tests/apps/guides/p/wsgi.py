"""`p.wsgi:application`, the Django-style layout of Gunicorn's gevent guide."""
import threading


def application(environ, start_response):
    body = ("p.wsgi on %s\n" % threading.current_thread().name).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
