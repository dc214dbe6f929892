"""A WSGI application wrapped in wsgiref.validate.validator (PEP 3333 lint).

The validator checks both sides: the environ and the objects the server hands
over (wsgi.input, wsgi.errors, start_response, write) and what the server does
with the response iterable (it must be closed). A violation raises
AssertionError, or, for an iterable that is never closed, prints "Iterator
garbage collected without being closed" and an ignored AssertionError from
__del__; soft problems are WSGIWarning warnings. All of that lands on the
server's stderr, which the test reads.

Routes (all under the validator):
    /                 "validated\\n" with Content-Length
    /write            start_response's write() then a returned body
    /lazy             empty first chunks: headers must wait for real data
    /excinfo-before   start_response(..., exc_info) before any body: replaces the status
    /excinfo-after    start_response(..., exc_info) after the body started: must re-raise
    /input?mode=M     read(n) / readline() / readline(n) / readlines() / iteration / mixed
    /close            an iterable with close(); close() writes $TESTAPP_MARKER_DIR/close-validated
    /file             wsgi.file_wrapper over this very file
    /errors           wsgi.errors write / writelines / flush
    /nocontent        204 without a body
"""

import hashlib
import json
import os
import sys
from urllib.parse import parse_qs
from wsgiref.validate import validator

TEXT = [("Content-Type", "text/plain")]


def _json(start_response, doc):
    body = json.dumps(doc, sort_keys=True).encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _input(environ, start_response):
    inp = environ["wsgi.input"]
    mode = parse_qs(environ.get("QUERY_STRING", "")).get("mode", ["read"])[0]
    if mode == "mixed":
        pieces = [
            inp.readline(),
            inp.read(5),
            inp.readline(3),
            inp.readline(),
            *inp.readlines(),
            inp.read(10),
        ]
        return _json(start_response, {"pieces": [p.decode("latin-1") for p in pieces]})
    h = hashlib.sha256()
    total = 0
    if mode == "read":
        while True:
            data = inp.read(4096)
            if not data:
                break
            h.update(data)
            total += len(data)
    elif mode == "readline":
        while True:
            line = inp.readline()
            if not line:
                break
            h.update(line)
            total += len(line)
    elif mode == "readline-sized":
        while True:
            line = inp.readline(7)
            if not line:
                break
            h.update(line)
            total += len(line)
    elif mode == "readlines":
        for line in inp.readlines():
            h.update(line)
            total += len(line)
    elif mode == "iter":
        for line in inp:
            h.update(line)
            total += len(line)
    return _json(start_response, {"mode": mode, "len": total, "sha256": h.hexdigest()})


class ClosingBody:
    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        d = os.environ.get("TESTAPP_MARKER_DIR")
        if d:
            with open(os.path.join(d, "close-validated"), "w") as f:
                f.write("closed\n")


def inner(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = b"validated\n"
        start_response("200 OK", TEXT + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/write":
        write = start_response("200 OK", TEXT)
        write(b"written-")
        return [b"returned\n"]
    if path == "/lazy":
        start_response("200 OK", TEXT)
        return iter([b"", b"lazy-", b"", b"body\n"])
    if path == "/excinfo-before":
        start_response("200 OK", TEXT)
        try:
            raise ValueError("replaced before the headers were sent")
        except ValueError:
            body = b"handled\n"
            start_response(
                "500 Internal Server Error",
                TEXT + [("Content-Length", str(len(body)))],
                sys.exc_info(),
            )
        return [body]
    if path == "/excinfo-after":

        def body():
            start_response("200 OK", TEXT)
            yield b"first\n"
            try:
                raise ValueError("excinfo-after-headers")
            except ValueError:
                # PEP 3333: the headers are out, so this call must re-raise.
                start_response("500 Internal Server Error", TEXT, sys.exc_info())
            yield b"NOT-RERAISED\n"

        return body()
    if path == "/input":
        return _input(environ, start_response)
    if path == "/close":
        start_response("200 OK", TEXT)
        return ClosingBody([b"closing-", b"body\n"])
    if path == "/file":
        f = open(__file__, "rb")
        size = os.fstat(f.fileno()).st_size
        start_response(
            "200 OK", [("Content-Type", "text/x-python"), ("Content-Length", str(size))]
        )
        return environ["wsgi.file_wrapper"](f)
    if path == "/errors":
        err = environ["wsgi.errors"]
        err.write("validated-errors-write\n")
        err.writelines(["validated-errors-writelines-1\n", "validated-errors-writelines-2\n"])
        err.flush()
        body = b"errors written\n"
        start_response("200 OK", TEXT + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    body = b"no such route\n"
    start_response("404 Not Found", TEXT + [("Content-Length", str(len(body)))])
    return [body]


app = validator(inner)
application = app
