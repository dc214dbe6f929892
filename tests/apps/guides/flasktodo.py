"""`flasktodo:app`: a small Flask app whose pages link to each other with
url_for, so a mount point (SCRIPT_NAME) shows in every link it builds."""
import os
import time

from flask import Flask, jsonify, request, url_for

app = Flask(__name__)
TODOS = ["write tests"]


@app.route("/")
def index():
    return jsonify(
        todos=TODOS,
        links={"self": url_for("index"), "item": url_for("item", n=0),
               "external": url_for("index", _external=True)},
        script_name=request.environ.get("SCRIPT_NAME"),
        path_info=request.environ.get("PATH_INFO"),
    )


@app.route("/todo/<int:n>")
def item(n):
    return jsonify(todo=TODOS[n], back=url_for("index"))


@app.route("/slow")
def slow():
    """A request that takes `s` seconds (for stops under load)."""
    s = float(request.args.get("s", "1"))
    time.sleep(s)
    return jsonify(slept=s, pid=os.getpid())
