"""Serves a WSGI app with bjoern, which has no command line of its own.

    python bjoern_serve.py MODULE:CALLABLE HOST PORT   (run from the apps directory)

bjoern is single-process and single-threaded: one event loop (libev) calls
the app inline, so it needs no worker or thread flags.
"""

import importlib
import os
import sys

import bjoern


def main():
    sys.path.insert(0, os.getcwd())
    target, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name or "application")
    bjoern.run(app, host, port)


if __name__ == "__main__":
    main()
