"""A WSGI app whose import fails (stdlib only).

ferrocorn must exit with status 4, name this module and the exception in
one log line, and systemd must not restart it (RestartPreventExitStatus=4).
"""

raise RuntimeError("broken on purpose by the systemd tests")


def application(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
