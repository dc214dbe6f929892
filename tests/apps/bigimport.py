"""An app that allocates 64 MiB at import, for the --preload memory test:
preloaded workers share those pages copy-on-write, so each worker's PSS is
well below its RSS."""

import os

BLOB = os.urandom(1 << 20) * 64


def app(environ, start_response):
    body = b"%d %d\n" % (os.getpid(), len(BLOB))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
