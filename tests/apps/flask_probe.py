"""A Flask application for the virtualenv test: proves that Flask is imported
from the virtualenv ferrocorn was told to use (--virtualenv), not from the
system site-packages.

    GET /     -> JSON {"flask": <flask.__file__>, "prefix": sys.prefix, ...}
    GET /pid  -> the worker's pid as text (scripts/boot-bench.py)
"""

import importlib.metadata
import os
import sys

import flask
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def where():
    return jsonify(
        flask=flask.__file__,
        flask_version=importlib.metadata.version("flask"),
        prefix=sys.prefix,
        base_prefix=sys.base_prefix,
        executable=sys.executable,
        python=sys.version.split()[0],
        method=request.method,
    )


@app.get("/pid")
def pid():
    return str(os.getpid())
