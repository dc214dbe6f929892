#!/usr/bin/env python3
"""Re-import Gunicorn's request corpus into tests/conformance/corpus/gunicorn.

Gunicorn keeps its parser tests as pairs in tests/requests/{valid,invalid}:
NAME.http (the raw request, verbatim, with literal \\r\\n) and NAME.py (what it
must parse to: ``request = {...}`` or a list of them, or the exception class
it must raise, and optionally ``cfg = Config(); cfg.set(...)``). This script
takes them from the gunicorn sdist on PyPI, copies the .http files and turns
the .py files into cases.json without importing gunicorn (the few names the
files use are stubbed), so the corpus runner needs only the standard library.

    tests/conformance/import-gunicorn-corpus.py [VERSION]    (default 27.0.1)

Needs pip and network access to PyPI; writes nothing else. Review the diff
before committing: a new Gunicorn release may add cases the runner or the
server do not know yet.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
DEST = os.path.join(HERE, "corpus", "gunicorn")


class Config:
    """Stands in for gunicorn.config.Config: records cfg.set() calls."""

    def __init__(self):
        self.settings = {}

    def set(self, name, value):
        # Gunicorn 27: limit_request_field_size = 0 means its default (8190),
        # so such a case runs with the default settings.
        if (name, value) != ("limit_request_field_size", 0):
            self.settings[name] = value


def stub_modules():
    """gunicorn.config and gunicorn.http.errors, as far as the case files use them."""
    errors = types.ModuleType("gunicorn.http.errors")
    errors.__getattr__ = lambda name: type(name, (Exception,), {})
    config = types.ModuleType("gunicorn.config")
    config.Config = Config
    gunicorn = types.ModuleType("gunicorn")
    http = types.ModuleType("gunicorn.http")
    gunicorn.http, gunicorn.config, http.errors = http, config, errors
    return {"gunicorn": gunicorn, "gunicorn.http": http, "gunicorn.config": config,
            "gunicorn.http.errors": errors}


def load_case(py_path):
    """The names a case file defines, evaluated with the stubs in place."""
    saved = {k: sys.modules.get(k) for k in stub_modules()}
    sys.modules.update(stub_modules())
    try:
        env = {"uri": lambda u: u, "__name__": "case"}
        with open(py_path, encoding="utf-8") as f:
            exec(compile(f.read(), py_path, "exec"), env)
        return env
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def as_json_request(r):
    body = r.get("body", b"")
    if isinstance(body, bytes):
        body = body.decode("latin-1")
    out = {
        "method": r["method"],
        "uri": r["uri"],
        "version": list(r["version"]),
        "headers": [list(h) for h in r["headers"]],
        "body": body,
    }
    if "trailers" in r:
        out["trailers"] = [list(t) for t in r["trailers"]]
    return out


def convert(requests_dir):
    cases = []
    for kind in ("valid", "invalid"):
        for http in sorted(glob.glob(os.path.join(requests_dir, kind, "*.http"))):
            stem = os.path.splitext(os.path.basename(http))[0]
            env = load_case(os.path.join(requests_dir, kind, stem + ".py"))
            cfg = env["cfg"].settings if "cfg" in env else {}
            case = {"name": "%s/%s" % (kind, stem), "kind": kind,
                    "http": "%s/%s.http" % (kind, stem), "cfg": cfg}
            request = env["request"]
            if kind == "valid":
                requests = request if isinstance(request, list) else [request]
                case["requests"] = [as_json_request(r) for r in requests]
            else:
                case["error"] = request.__name__
            cases.append(case)
    return cases


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else "27.0.1"
    with tempfile.TemporaryDirectory(prefix="gunicorn-corpus-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "gunicorn==" + version, "-d", tmp], check=True)
        sdist = glob.glob(os.path.join(tmp, "gunicorn-*.tar.gz"))[0]
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
        src = os.path.join(tmp, "gunicorn-" + version)
        requests_dir = os.path.join(src, "tests", "requests")
        cases = convert(requests_dir)
        for kind in ("valid", "invalid"):
            shutil.rmtree(os.path.join(DEST, kind), ignore_errors=True)
            os.makedirs(os.path.join(DEST, kind))
            for http in glob.glob(os.path.join(requests_dir, kind, "*.http")):
                shutil.copy(http, os.path.join(DEST, kind))
        for name in ("LICENSE", "NOTICE"):
            shutil.copy(os.path.join(src, name), os.path.join(DEST, name))
        doc = {"source": "pypi:gunicorn==%s (sdist tests/requests)" % version,
               "note": "Converted from tests/requests/*/*.py of gunicorn; .http files are verbatim.",
               "cases": cases}
        with open(os.path.join(DEST, "cases.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
    print("import-gunicorn-corpus: %d cases from gunicorn %s into %s"
          % (len(cases), version, os.path.relpath(DEST)))


if __name__ == "__main__":
    main()
