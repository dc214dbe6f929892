# The Python side of starting a worker, run by the master as
#   PYTHON -c THIS_FILE probe CANDIDATES BUILD
#   PYTHON -c THIS_FILE worker NATIVE BOOT_FD
#   PYTHON -c THIS_FILE check NATIVE BOOT_FD
#   PYTHON -c THIS_FILE config LOCATION NAMES
# CANDIDATES are the paths of the native modules built with the master, one
# per line: version-specific ones (_native.SOABI.so) and the stable-ABI one
# (_native.abi3.so, or libferrocorn.so in a cargo build tree); "" means to
# import `ferrocorn._native` from the interpreter's own packages (a wheel
# installed in it). `probe` prints the interpreter's version on the first
# line, then a JSON object describing it and the module it chose: the first
# that loads and is of the master's BUILD, trying the one built for its
# SOABI before the stable-ABI one (a build tree may hold version-specific
# modules of older sources); it must stay parseable by any Python (2.7
# included) so that an unsupported version is named rather than failing on
# syntax. NATIVE is the module the probe chose. `worker` hands control to the Rust worker and
# exits with its status, without finalising the interpreter (as a worker
# always has: app threads may still be running); `check` only imports the
# app (--check-config). `config` runs a gunicorn.conf.py (LOCATION: a path,
# or python:MODULE) in the working directory, first on sys.path, and prints,
# as JSON, its variables named like one of NAMES (comma-separated), which of
# those hold a callable (hooks) and the line of each one's assignment; if
# the file raises, one line (its line and the error) on stderr, status 1.
import sys

if sys.path and sys.path[0] in ("", "."):
    # `-c` puts the working directory first; the worker puts the app's
    # directories there itself, after this file has run.
    del sys.path[0]


def load(native):
    if not native:
        from ferrocorn import _native

        return _native
    from importlib.machinery import ExtensionFileLoader
    from importlib.util import module_from_spec, spec_from_loader

    loader = ExtensionFileLoader("ferrocorn._native", native)
    module = module_from_spec(spec_from_loader("ferrocorn._native", loader))
    loader.exec_module(module)
    # The one copy of the module in this process, for the app to find.
    sys.modules["ferrocorn._native"] = module
    return module


def order(candidates, soabi):
    """The module built for this interpreter's SOABI first, then the
    stable-ABI ones; [""] (import) when there are none."""
    paths = [p for p in candidates.split("\n") if p]
    specific = [p for p in paths if p.rsplit("/", 1)[-1] == "_native.%s.so" % soabi]
    stable = [p for p in paths if p.endswith(".abi3.so") or p.endswith("/libferrocorn.so")]
    return specific + stable if paths else [""]


def probe(candidates, build):
    sys.stdout.write("%d.%d.%d\n" % tuple(sys.version_info[:3]))
    sys.stdout.flush()
    import json
    import sysconfig

    info = {
        "executable": sys.executable,
        "implementation": getattr(sys, "implementation", None) and sys.implementation.name,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "soabi": sysconfig.get_config_var("SOABI"),
        "tried": [],
    }
    if sys.version_info >= (3, 9) and info["implementation"] == "cpython" and not info["free_threaded"]:
        for native in order(candidates, info["soabi"]):
            try:
                module = load(native)
            except Exception as e:
                info["tried"].append([native, "%s: %s" % (type(e).__name__, e)])
                continue
            if getattr(module, "__build__", None) != build:
                info["tried"].append([native, "another build: ferrocorn %s (build %s)" % (
                    getattr(module, "__version__", "?"), getattr(module, "__build__", "?"))])
                continue
            info["native"] = native
            info["module"] = module.__file__
            break
    sys.stdout.write(json.dumps(info) + "\n")


def config(location, names):
    import json
    import os

    # As Gunicorn's master, which changes to --chdir and puts it first on
    # sys.path before it reads the file.
    sys.path.insert(0, os.getcwd())
    source = location
    try:
        if location.startswith("python:"):
            import importlib
            import importlib.util

            module = location[len("python:"):]
            spec = importlib.util.find_spec(module)
            source = spec and spec.origin
            namespace = vars(importlib.import_module(module))
        else:
            # The namespace Gunicorn runs the file in (and the arbiter: hooks.py).
            namespace = {"__builtins__": __builtins__, "__name__": "__config__",
                         "__file__": location, "__doc__": None, "__package__": None}
            with open(location, "rb") as f:
                code = compile(f.read(), location, "exec")
            exec(code, namespace)
    except Exception as e:
        sys.stderr.write(where_raised(e, source) + "\n")
        sys.exit(1)
    wanted = set(names.split(","))
    values, hooks = {}, []
    for name, value in namespace.items():
        if name not in wanted:
            continue
        if callable(value) and not isinstance(value, type):
            hooks.append(name)
        else:
            values[name] = value

    def plain(o):
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        return str(o)

    result = {"values": values, "hooks": hooks, "lines": assigned_lines(source, wanted)}
    sys.stdout.write(json.dumps(result, default=plain) + "\n")


def where_raised(e, source):
    """One line: the configuration file's line that raised (SOURCE is its
    path), and the error."""
    import traceback

    if isinstance(e, SyntaxError):
        return "line %s: SyntaxError: %s" % (e.lineno, e.msg)
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == source:
            line = frame.lineno
    text = "%s: %s" % (type(e).__name__, e)
    return "line %s: %s" % (line, text) if line else text


def assigned_lines(source, wanted):
    """The line of each top-level assignment (or def) of a setting's name,
    the last one winning, for messages about bad values."""
    import ast

    try:
        with open(source, "rb") as f:
            tree = ast.parse(f.read())
    except Exception:
        return {}
    lines = {}
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in wanted:
                lines[node.name] = node.lineno
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and n.id in wanted:
                    lines[n.id] = node.lineno
    return lines


if sys.argv[1] == "probe":
    probe(sys.argv[2], sys.argv[3])
elif sys.argv[1] == "config":
    config(sys.argv[2], sys.argv[3])
elif sys.argv[1] == "check":
    import os

    status = load(sys.argv[2]).check_app(int(sys.argv[3]))
    os._exit(status)
else:
    import os

    status = load(sys.argv[2]).run_worker(int(sys.argv[3]))
    os._exit(status)
