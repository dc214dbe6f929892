"""The smallest WSGI application: standard library only.

    ferrocorn --chdir examples hello:app
    curl http://127.0.0.1:8000/
"""

BODY = b"Hello, World!\n"


def application(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]


app = application
