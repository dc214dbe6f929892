"""A WSGI app that takes 5 seconds to import (stdlib only).

The systemd tests use it to show that ferrocorn reports READY=1 only after
every worker has imported the app, and keeps extending the start timeout
(EXTEND_TIMEOUT_USEC) while the import runs.
"""

import os
import time

IMPORT_SECONDS = 5
time.sleep(IMPORT_SECONDS)


def application(environ, start_response):
    data = f"hello from slow pid={os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
