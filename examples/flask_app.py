"""A small Flask application served by ferrocorn.

    python3.11 -m venv .venv && .venv/bin/pip install -r examples/requirements.txt
    ferrocorn --virtualenv .venv --chdir examples flask_app:app

Routes:
    GET  /              an HTML page with a form
    POST /greet         the form's target: 303 redirect to /hello/<name>
    GET  /hello/<name>  the redirect's target
    GET  /api/info      JSON: method, path, the WSGI server flags, Python version
    GET  /stream        a streamed (chunked) response in several parts
"""

import os
import sys
import time

from flask import Flask, Response, jsonify, redirect, request, stream_with_context, url_for
from markupsafe import escape

app = Flask(__name__)

INDEX = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ferrocorn + Flask</title></head>
<body>
  <h1>Served by ferrocorn</h1>
  <p>This Flask application runs inside a ferrocorn worker.</p>
  <form method="post" action="/greet">
    <label>Your name <input name="name" value="world"></label>
    <button type="submit">Greet me</button>
  </form>
  <p><a href="/api/info">/api/info</a> &middot; <a href="/stream">/stream</a></p>
</body>
</html>
"""


@app.get("/")
def index():
    return INDEX


@app.post("/greet")
def greet():
    name = request.form.get("name", "").strip() or "anonymous"
    # 303 See Other: the browser follows with a GET (POST/redirect/GET).
    return redirect(url_for("hello", name=name), code=303)


@app.get("/hello/<name>")
def hello(name):
    return f"<!doctype html><title>Hello</title><h1>Hello, {escape(name)}!</h1>\n"


@app.get("/api/info")
def info():
    env = request.environ
    return jsonify(
        server="ferrocorn",
        method=request.method,
        path=request.path,
        pid=os.getpid(),
        python=sys.version.split()[0],
        prefix=sys.prefix,
        multithread=bool(env.get("wsgi.multithread")),
        multiprocess=bool(env.get("wsgi.multiprocess")),
        url_scheme=env.get("wsgi.url_scheme"),
    )


@app.get("/stream")
def stream():
    count = min(int(request.args.get("n", 5)), 100)
    delay = min(float(request.args.get("delay", 0.0)), 1.0)

    def generate():
        for i in range(count):
            yield f"chunk {i} of {count} ({request.path})\n"
            if delay:
                time.sleep(delay)

    return Response(stream_with_context(generate()), mimetype="text/plain")


if __name__ == "__main__":
    print("run me with: ferrocorn --chdir examples flask_app:app", file=sys.stderr)
