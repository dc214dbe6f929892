"""big: a 1 MiB response body, with a Content-Length.

    /        the whole MiB as one chunk (one bytes object)
    /chunks  the same MiB as 64 chunks of 16 KiB (an iterator over a list:
             the items exist already)
    /gen     the same 64 chunks from a generator (each made when asked for)

Measures how the server writes large bodies: copies, syscalls per chunk,
and whether it coalesces writes.
"""

SIZE = 1 << 20
CHUNK = 16 << 10
BODY = b"x" * SIZE
CHUNKS = [BODY[i : i + CHUNK] for i in range(0, SIZE, CHUNK)]
assert len(CHUNKS) == 64
HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE))]


def application(environ, start_response):
    start_response("200 OK", list(HEADERS))
    path = environ.get("PATH_INFO")
    if path == "/chunks":
        return iter(CHUNKS)
    if path == "/gen":
        return (chunk for chunk in CHUNKS)
    return [BODY]


app = application
