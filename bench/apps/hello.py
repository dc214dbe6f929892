"""hello: the 13-byte body `Hello, World!` with a Content-Length.

The smallest request a server can answer; what it costs is the server's own
overhead per request (parse, environ, start_response, write). Also served by
the pipelined and 1,000-idle-connections workloads.
"""

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]


app = application
