"""hostile: the app for bench/slow_clients.py (slow readers, slowloris).

    /               a 3-byte answer: the normal client's request
    /big?mib=N      N MiB (50 by default) as one bytes object, made fresh
                    for every request: what a slow reader would pin
"""

from urllib.parse import parse_qs


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/big":
        mib = int(parse_qs(environ.get("QUERY_STRING", "")).get("mib", ["50"])[0])
        body = b"x" * (mib << 20)
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = application
