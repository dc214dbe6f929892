"""`applicationname.wsgi`: a module whose callable is `application`, named
without `:CALLABLE` in the command line, as in the systemd guide."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"applicationname.wsgi\n"]
