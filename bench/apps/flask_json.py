"""flask: Flask's `jsonify` of a small dict at `/`.

A typical framework request: routing, request/response objects and JSON
encoding dominate, so the server's share is smaller than in `hello`.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/")
def index():
    return jsonify(message="Hello, World!", id=1, tags=["wsgi", "bench"], ok=True)


application = app
