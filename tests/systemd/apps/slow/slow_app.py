"""A WSGI app that takes 5 seconds to import in all but one worker (stdlib only).

The systemd tests use it to show that ferrocorn reports READY=1 only after
*every* worker has imported the app, and keeps extending the start timeout
(EXTEND_TIMEOUT_USEC) while the import runs. The first worker of a master to
get here imports in 1 second, the others in 5: a server that signalled
readiness as soon as one worker were up would be caught ~4 seconds early.
"""

import os
import time

FAST_SECONDS = 1
IMPORT_SECONDS = 5

# one marker per master (the workers' parent): only the first worker wins it
# (an unwritable /tmp makes every worker slow, which only weakens the check)
try:
    os.close(os.open(f"/tmp/slow_app.first.{os.getppid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    first = True
except OSError:
    first = False
time.sleep(FAST_SECONDS if first else IMPORT_SECONDS)


def application(environ, start_response):
    data = f"hello from slow pid={os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
