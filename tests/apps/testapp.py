"""The WSGI application most integration tests run (standard library only).

One app, routed by PATH_INFO, so that one server start can serve a whole test.
Every route is deterministic so the Rust side can compute what it expects:

    /                      "ok\\n"
    /environ               the environ as JSON (non-JSON values as their type name)
    /pid                   os.getpid() as text
    /python                JSON {"version", "executable", "prefix", "native"}: the
                           interpreter the worker runs in and the native module's file
    /record?tag=T          appends T to $TESTAPP_MARKER_DIR/requests.log, answers "recorded"
    /echo                  the request body back (Content-Length), X-Body-Sha256 header
    /sha256?mode=M&n=N     reads the body through wsgi.input and answers JSON
                           {"len", "sha256", "mode", "calls"}; M is one of
                           read (read(N) until b""), read-cl (read(N) up to CONTENT_LENGTH),
                           readall (read()), readline (readline() until b""),
                           readline-sized (readline(N)), readlines, iter (for line in input)
    /big?size=B|mib=M&mode=one|chunks|write&length=0|1
                           B bytes of PATTERN (byte i is i % 251): one bytes object, 16 KiB
                           chunks, or through write(); Content-Length only with length=1
    /nolength?n=K          K chunks "chunk i\\n" with no Content-Length (chunked on 1.1)
    /onelist               [b"exactly one item\\n"] with no Content-Length
    /status?code=C         an empty response with that status
    /error/before          raises before start_response
    /error/after-start     calls start_response, then raises before any body
    /error/mid-body?framing=length|chunked
                           sends one chunk, then raises
    /closing?token=T&mode=ok|raise|stream
                           an iterable whose close() writes $TESTAPP_MARKER_DIR/close-T
                           (content: "chunks=N", the number of chunks it yielded)
    /file?path=P&length=0|1
                           wsgi.file_wrapper over the file P
    /sleep?s=S&tag=T       sleeps S seconds, answers JSON {"pid", "thread", "slept"};
                           with a tag, first writes $TESTAPP_MARKER_DIR/sleep-T
    /osenv?key=K           JSON {"key": K, "value": os.environ.get(K)}
    /crash                 SIGKILLs its own worker
    /print?msg=M           print(M) to the worker's stdout
    /hog?mb=N              keeps N MiB allocated for the worker's life; answers the pid
    /exit                  os._exit(17) in its own worker
    /log?msg=M             writes M to wsgi.errors, answers "logged"
    /pylog?msg=M           logging.getLogger("testapp").warning(M), answers "logged"
    /argv                  sys.argv as JSON
"""

import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
from urllib.parse import parse_qs

PATTERN = bytes(range(251))
CHUNK = 16 * 1024


def pattern(size):
    """The deterministic download body: byte i is i % 251."""
    reps = size // len(PATTERN) + 1
    return (PATTERN * reps)[:size]


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _marker_dir():
    return os.environ.get("TESTAPP_MARKER_DIR")


def _text(start_response, body, status="200 OK", extra=()):
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    start_response(status, headers)
    return [body]


def _json(start_response, doc, status="200 OK"):
    body = json.dumps(doc, sort_keys=True).encode("utf-8")
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _jsonable(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return "<%s>" % type(value).__name__


def environ_doc(environ):
    return {k: _jsonable(v) for k, v in environ.items()}


def route_environ(environ, start_response, q):
    return _json(start_response, environ_doc(environ))


def route_record(environ, start_response, q):
    d = _marker_dir()
    if d:
        with open(os.path.join(d, "requests.log"), "a") as f:
            f.write(q.get("tag", "-") + "\n")
    return _text(start_response, "recorded\n")


def _read_all(environ):
    inp = environ["wsgi.input"]
    parts = []
    while True:
        data = inp.read(65536)
        if not data:
            break
        parts.append(data)
    return b"".join(parts)


def route_echo(environ, start_response, q):
    body = _read_all(environ)
    ctype = environ.get("CONTENT_TYPE") or "application/octet-stream"
    start_response(
        "200 OK",
        [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("X-Body-Sha256", hashlib.sha256(body).hexdigest()),
        ],
    )
    return [body]


def route_swallow(environ, start_response, q):
    """Read the body and swallow any error wsgi.input raises, then say 200:
    for an incomplete request that answer must still never go out."""
    try:
        note = "read %d bytes\n" % len(_read_all(environ))
    except OSError as e:
        note = "swallowed: %s\n" % e
    return _text(start_response, note)


def route_sha256(environ, start_response, q):
    inp = environ["wsgi.input"]
    mode = q.get("mode", "read")
    n = int(q.get("n", "65536"))
    h = hashlib.sha256()
    total = 0
    calls = 0
    if mode == "read":
        while True:
            data = inp.read(n)
            calls += 1
            if not data:
                break
            h.update(data)
            total += len(data)
    elif mode == "read-cl":
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        while remaining > 0:
            data = inp.read(min(n, remaining))
            calls += 1
            if not data:
                break
            h.update(data)
            total += len(data)
            remaining -= len(data)
    elif mode == "readall":
        data = inp.read()
        calls = 1
        h.update(data)
        total = len(data)
    elif mode == "line-then-rest":
        # A short read buffers ahead; the bulk read after it must start there.
        data = inp.readline() + inp.read()
        calls = 2
        h.update(data)
        total = len(data)
    elif mode == "readline":
        while True:
            line = inp.readline()
            calls += 1
            if not line:
                break
            h.update(line)
            total += len(line)
    elif mode == "readline-sized":
        while True:
            line = inp.readline(n)
            calls += 1
            if not line:
                break
            if len(line) > n:
                raise AssertionError("readline(%d) returned %d bytes" % (n, len(line)))
            h.update(line)
            total += len(line)
    elif mode == "readlines":
        for line in inp.readlines():
            calls += 1
            h.update(line)
            total += len(line)
    elif mode == "iter":
        for line in inp:
            calls += 1
            h.update(line)
            total += len(line)
    else:
        return _text(start_response, "unknown mode\n", "400 Bad Request")
    return _json(
        start_response, {"len": total, "sha256": h.hexdigest(), "mode": mode, "calls": calls}
    )


def route_big(environ, start_response, q):
    if "size" in q:
        size = int(q["size"])
    else:
        size = int(float(q.get("mib", "1")) * 1024 * 1024)
    mode = q.get("mode", "one")
    data = pattern(size)
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("length", "1") == "1":
        headers.append(("Content-Length", str(size)))
    if mode == "one":
        start_response("200 OK", headers)
        return [data]
    if mode == "chunks":
        start_response("200 OK", headers)
        return (data[i : i + CHUNK] for i in range(0, size, CHUNK))
    if mode in ("list", "iter"):
        # Items that exist already: the server may send several per write.
        chunks = [data[i : i + CHUNK] for i in range(0, size, CHUNK)]
        if "declare" in q:
            headers[-1] = ("Content-Length", q["declare"])
        start_response("200 OK", headers)
        return chunks if mode == "list" else iter(chunks)
    if mode == "write":
        write = start_response("200 OK", headers)
        for i in range(0, size, CHUNK):
            write(data[i : i + CHUNK])
        return []
    return _text(start_response, "unknown mode\n", "400 Bad Request")


def route_nolength(environ, start_response, q):
    n = int(q.get("n", "3"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (("chunk %d\n" % i).encode() for i in range(n))


def route_onelist(environ, start_response, q):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"exactly one item\n"]


def route_status(environ, start_response, q):
    code = int(q.get("code", "204"))
    reasons = {204: "No Content", 304: "Not Modified", 404: "Not Found", 418: "I'm a teapot"}
    start_response("%d %s" % (code, reasons.get(code, "Whatever")), [])
    return []


HEADER_FORMS = {
    # PEP 3333 asks for a list of tuples; Gunicorn takes any pairs.
    "tuples": (("Content-Type", "text/plain"), ("X-Form", "tuples")),
    "lists": [["Content-Type", "text/plain"], ["X-Form", "lists"]],
    # Refused: each must become a 500, never reach the wire.
    "inject": [("X-Bad", "a\r\nSet-Cookie: stolen=1")],
    "badname": [("X Bad", "1")],
    "bytes": [(b"X-Bytes", b"1")],
    "triple": [("X-Three", "1", "2")],
    "conflict": [("Content-Length", "3"), ("Content-Length", "4")],
    # PEP 3333: values are latin-1 native strings, sent as latin-1; a code
    # point above U+00FF cannot be (a 500).
    "latin1": [("Content-Type", "text/plain"), ("X-Cafe", "caf\u00e9")],
    "wide": [("X-Wide", "\u65e5\u672c")],
    # Hop-by-hop fields are the server's: dropped, but close is honoured.
    "hop": [("Connection", "close"), ("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
}


def route_headers(environ, start_response, q):
    form = q.get("form", "tuples")
    start_response("200 OK", HEADER_FORMS[form])
    return [b"abc" if form == "hop" else form.encode()]


def route_error_before(environ, start_response, q):
    raise RuntimeError("boom-before-start-response")


def route_error_after_start(environ, start_response, q):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("boom-after-start-response")


def route_error_mid_body(environ, start_response, q):
    headers = [("Content-Type", "text/plain")]
    if q.get("framing", "length") == "length":
        headers.append(("Content-Length", "100000"))
    start_response("200 OK", headers)

    def body():
        yield b"first part of the body\n"
        raise RuntimeError("boom-mid-body")

    return body()


class Closing:
    """A response iterable whose close() leaves a file behind."""

    def __init__(self, token, chunks, fail_after=None, delay=0.0):
        self.token = token
        self.chunks = chunks
        self.fail_after = fail_after
        self.delay = delay
        self.count = 0

    def __iter__(self):
        for chunk in self.chunks:
            if self.fail_after is not None and self.count >= self.fail_after:
                raise RuntimeError("boom-in-closing-iterable")
            self.count += 1
            yield chunk
            if self.delay:
                time.sleep(self.delay)

    def close(self):
        d = _marker_dir()
        if d:
            tmp = os.path.join(d, "close-%s.tmp" % self.token)
            with open(tmp, "w") as f:
                f.write("chunks=%d\n" % self.count)
            os.rename(tmp, os.path.join(d, "close-%s" % self.token))


def route_closing(environ, start_response, q):
    token = q.get("token", "x")
    mode = q.get("mode", "ok")
    if mode == "ok":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "18")])
        return Closing(token, [b"closing ", b"iterable\n", b"!"])
    if mode == "raise":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(token, [b"one\n", b"two\n", b"three\n"], fail_after=1)
    if mode == "stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        block = b"x" * 65536
        return Closing(token, (block for _ in range(2000)), delay=0.005)
    return _text(start_response, "unknown mode\n", "400 Bad Request")


class MarkedFile(io.FileIO):
    """A file whose close() leaves a marker (`close-TOKEN`), as Closing."""

    def __init__(self, path, token):
        super().__init__(path, "rb")
        self.token = token

    def close(self):
        if not self.closed:
            d = _marker_dir()
            if d:
                tmp = os.path.join(d, "close-%s.tmp" % self.token)
                with open(tmp, "w") as f:
                    f.write("closed at %d\n" % self.tell())
                os.rename(tmp, os.path.join(d, "close-%s" % self.token))
        super().close()


def route_file(environ, start_response, q):
    path = q["path"]
    f = MarkedFile(path, q["token"]) if "token" in q else open(path, "rb")
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("length", "1") == "1":
        headers.append(("Content-Length", str(os.fstat(f.fileno()).st_size)))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 32768)


def route_sleep(environ, start_response, q):
    s = float(q.get("s", "1"))
    d = _marker_dir()
    if d and "tag" in q:
        with open(os.path.join(d, "sleep-%s" % q["tag"]), "w") as f:
            f.write("started\n")
    time.sleep(s)
    return _json(start_response, {"pid": os.getpid(), "thread": threading.get_ident(), "slept": s})


def route_pid(environ, start_response, q):
    return _text(start_response, "%d\n" % os.getpid())


def route_python(environ, start_response, q):
    native = sys.modules.get("ferrocorn._native")
    return _json(start_response, {
        "version": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "native": getattr(native, "__file__", None),
    })


_HOARD = []


def route_hog(environ, start_response, q):
    """Keep `mb` MiB allocated (and touched) for the rest of the worker's life."""
    _HOARD.append(bytearray(int(q.get("mb", "1")) << 20))
    return _text(start_response, "%d\n" % os.getpid())


def route_crash(environ, start_response, q):
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)
    return _text(start_response, "still alive?\n", "500 Internal Server Error")


def route_exit(environ, start_response, q):
    os._exit(17)


def route_osenv(environ, start_response, q):
    key = q.get("key", "")
    return _json(start_response, {"key": key, "value": os.environ.get(key)})


def route_log(environ, start_response, q):
    environ["wsgi.errors"].write(q.get("msg", "nothing") + "\n")
    environ["wsgi.errors"].flush()
    return _text(start_response, "logged\n")


def route_pylog(environ, start_response, q):
    import logging

    logging.getLogger("testapp").warning(q.get("msg", "nothing"))
    return _text(start_response, "logged\n")


def route_argv(environ, start_response, q):
    return _json(start_response, sys.argv)


def route_print(environ, start_response, q):
    print(q.get("msg", "nothing"))
    return _text(start_response, "printed\n")


def route_root(environ, start_response, q):
    return _text(start_response, "ok\n")


ROUTES = {
    "/": route_root,
    "/environ": route_environ,
    "/pid": route_pid,
    "/python": route_python,
    "/record": route_record,
    "/echo": route_echo,
    "/sha256": route_sha256,
    "/big": route_big,
    "/nolength": route_nolength,
    "/onelist": route_onelist,
    "/status": route_status,
    "/headers": route_headers,
    "/error/before": route_error_before,
    "/error/after-start": route_error_after_start,
    "/error/mid-body": route_error_mid_body,
    "/closing": route_closing,
    "/file": route_file,
    "/sleep": route_sleep,
    "/crash": route_crash,
    "/print": route_print,
    "/hog": route_hog,
    "/exit": route_exit,
    "/swallow": route_swallow,
    "/log": route_log,
    "/pylog": route_pylog,
    "/argv": route_argv,
    "/osenv": route_osenv,
}


def app(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", "/"))
    if route is None:
        return _text(start_response, "no such route\n", "404 Not Found")
    return route(environ, start_response, _query(environ))


application = app
