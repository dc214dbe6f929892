"""upload: reads the whole request body from `wsgi.input`, answers its length.

The benchmark POSTs 1 MiB with a Content-Length.

    /        one `read(CONTENT_LENGTH)`, as `request.get_data()` asks for it
    /pieces  `read(65536)` until CONTENT_LENGTH bytes, as streaming uploads do

Either way the app loops until it has CONTENT_LENGTH bytes (a short read is
allowed) or the stream ends, and answers the byte count as text.
"""

PIECE = 64 << 10


def application(environ, start_response):
    try:
        want = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        want = 0
    piece = PIECE if environ.get("PATH_INFO") == "/pieces" else want
    stream = environ["wsgi.input"]
    got = 0
    while got < want:
        data = stream.read(min(piece, want - got))
        if not data:
            break
        got += len(data)
    body = str(got).encode()
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


app = application
