"""Find the WSGI callable named on the command line, as Gunicorn does.

``MODULE`` (callable ``application``), ``MODULE:NAME``, ``MODULE:a.b`` or a
factory call with literal arguments, ``MODULE:create_app("x", debug=True)``.
Errors raise ``AppImportError`` with a one-line message naming the module;
exceptions raised by the app's own import propagate unchanged so that the
caller can show their traceback.
"""

import importlib


class AppImportError(Exception):
    """The application could not be found or is not callable."""


class PasteConfigError(Exception):
    """A PasteDeploy file names what is not installed (``use = egg:X``): a
    configuration error (exit 78), not the app's."""


def _parse_call(expr):
    """``(path, args, kwargs, is_call)`` of ``a.b`` or ``a.b(literal, k=literal)``."""
    import ast

    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppImportError("failed to parse %r as an attribute name or function call" % expr) from None

    args, kwargs, is_call = [], {}, isinstance(node, ast.Call)
    if is_call:
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise AppImportError("factory arguments in %r must be literals" % expr) from None
        node = node.func
    path = []
    while isinstance(node, ast.Attribute):
        path.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppImportError("%r is not an attribute name or a function call" % expr)
    path.append(node.id)
    path.reverse()
    return path, args, kwargs, is_call


def load(uri):
    module, _, expr = uri.partition(":")
    module = module.strip()
    expr = expr.strip() or "application"
    if not module:
        raise AppImportError("no module given in %r" % uri)
    path, args, kwargs, is_call = expr.split("."), [], {}, False
    if not all(name.isidentifier() for name in path):
        # A factory call: `ast` only then, since importing it costs every
        # worker about 1 MiB.
        path, args, kwargs, is_call = _parse_call(expr)

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        # The app's module itself is missing: no traceback is needed to see why.
        if e.name == module or module.startswith((e.name or "") + "."):
            raise AppImportError("ModuleNotFoundError: %s" % e) from None
        raise

    obj = mod
    for name in path:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppImportError("failed to find attribute %r in %r" % (".".join(path), module)) from None
    if is_call:
        if not callable(obj):
            raise AppImportError("%r in %r is not callable" % (".".join(path), module))
        obj = obj(*args, **kwargs)
    if obj is None:
        raise AppImportError("%r in %r is None, not a WSGI application" % (expr, module))
    if not callable(obj):
        raise AppImportError("application object %r in %r must be callable" % (expr, module))
    return obj


def configure_logging(how, arg):
    """The app's Python logging, as Gunicorn's ``logconfig`` (``how`` is
    ``file``), ``logconfig_json`` (``json``, a path) or ``logconfig_dict``
    (``dict``, JSON text) configure it, before the app is imported. Existing
    loggers are kept, as in Gunicorn."""
    import json
    import logging.config
    import os

    if how == "file":
        defaults = {"__file__": arg, "here": os.path.dirname(arg)}
        logging.config.fileConfig(arg, defaults=defaults, disable_existing_loggers=False)
        return
    config = {"version": 1, "disable_existing_loggers": False}
    if how == "json":
        with open(arg) as f:
            config.update(json.load(f))
    else:
        config.update(json.loads(arg))
    logging.config.dictConfig(config)


def load_paste(path, name, global_conf):
    """A PasteDeploy app (Gunicorn's ``--paste FILE#NAME``): its [loggers]
    configure logging first, as Gunicorn does."""
    import configparser
    import os

    try:
        from paste.deploy import loadapp
    except ImportError:
        raise AppImportError(
            "--paste needs PasteDeploy in the app's environment (pip install PasteDeploy)"
        ) from None
    parser = configparser.ConfigParser()
    parser.read([path])
    if parser.has_section("loggers"):
        configure_logging("file", path)
    from importlib.metadata import PackageNotFoundError

    try:
        return loadapp(
            "config:%s" % path,
            name=name,
            relative_to=os.getcwd(),
            global_conf=dict(global_conf) or None,
        )
    except PackageNotFoundError as e:
        # args[0] is the name on every Python (str() differs from 3.10 on).
        missing = e.args[0] if e.args else str(e)
        raise PasteConfigError("%s#%s: no installed distribution %r (use = egg:%s)"
                               % (path, name, missing, missing)) from None
    except LookupError as e:
        # PasteDeploy's own "Entry point ... not found in egg ...", not an
        # app's KeyError or IndexError.
        if type(e) is not LookupError:
            raise
        raise PasteConfigError("%s#%s: %s" % (path, name, e)) from None
