# The Python side of starting a worker, run by the master as
#   PYTHON -c THIS_FILE probe NATIVE
#   PYTHON -c THIS_FILE worker NATIVE BOOT_FD
# NATIVE is the path of ferrocorn's native module built with the master, or
# "" to import `ferrocorn._native` from the interpreter's own packages (a
# wheel installed in it). `probe` prints the interpreter's version on the
# first line, then a JSON object describing it and whether the module loads;
# it must stay parseable by any Python (2.7 included) so that an unsupported
# version is named rather than failing on syntax. `worker` hands control to
# the Rust worker and exits with its status, without finalising the
# interpreter (as a worker always has: app threads may still be running).
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


def probe(native):
    sys.stdout.write("%d.%d.%d\n" % tuple(sys.version_info[:3]))
    sys.stdout.flush()
    import json
    import sysconfig

    info = {
        "executable": sys.executable,
        "implementation": getattr(sys, "implementation", None) and sys.implementation.name,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    }
    if sys.version_info >= (3, 9) and info["implementation"] == "cpython" and not info["free_threaded"]:
        try:
            module = load(native)
            info["module"] = module.__file__
            info["module_version"] = module.__version__
        except Exception as e:
            info["module_error"] = "%s: %s" % (type(e).__name__, e)
    sys.stdout.write(json.dumps(info) + "\n")


if sys.argv[1] == "probe":
    probe(sys.argv[2])
else:
    import os

    status = load(sys.argv[2]).run_worker(int(sys.argv[3]))
    os._exit(status)
