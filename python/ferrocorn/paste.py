"""PasteDeploy's server runner for ferrocorn.

With ferrocorn installed in the app's environment, a PasteDeploy .ini file
names it as its server, as it would Gunicorn's ``egg:gunicorn#main``::

    [server:main]
    use = egg:ferrocorn#main
    host = 127.0.0.1
    port = 6543
    workers = 4

and ``pserve development.ini`` (Pyramid) or Zope's ``runwsgi``/``bin/instance``
start ferrocorn for the file's ``main`` app. As in Gunicorn's runner:

- ``host`` and ``port`` give the bind address (``host`` alone may list
  several, comma-separated; ``port`` alone binds 127.0.0.1); ``listen`` (as
  waitress spells it) and ``bind`` give addresses, space-separated;
- ``config`` names a gunicorn.conf.py (else ``./gunicorn.conf.py`` is read if
  there is one); every other key is a setting by Gunicorn's name
  (``workers``, ``timeout``, ``preload_app``...), above the configuration
  file and below the command line's ``FERROCORN_CMD_ARGS``;
- the process name defaults to the .ini file, and its ``[loggers]`` configure
  the app's logging.

The runner replaces the calling process (pserve's) with the ferrocorn master
of the same environment, which serves the app with ``--paste FILE#main``:
the app object PasteDeploy already loaded here is not used, each worker
loads its own. The file's other global settings (pserve's ``var=value``
arguments included) reach the app as ``--paste-global``.
"""

import json
import os
import shutil
import sys

# What the master reads a [server] section's settings from
# (src/config/file.rs, PASTE_SERVER_VAR).
SETTINGS_VAR = "FERROCORN_PASTE_SERVER"

# PasteDeploy's own keys in global_conf, not the file's globals.
_NOT_GLOBALS = ("__file__", "here")


def master():
    """The ``ferrocorn`` command of this environment."""
    beside = os.path.join(os.path.dirname(sys.executable), "ferrocorn")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("ferrocorn")
    if found is None:
        raise RuntimeError(
            "egg:ferrocorn#main: no ferrocorn command beside %s or on PATH "
            "(pip install ferrocorn into this environment)" % sys.executable
        )
    return found


def server_settings(local_conf):
    """The [server] section's keys as ferrocorn's settings (text, or a list
    of texts for the addresses), the way Gunicorn's runner reads them."""
    settings = {k.lower(): v for k, v in local_conf.items() if v is not None}
    host = settings.pop("host", "")
    port = settings.pop("port", "")
    binds = []
    if host and port:
        binds.append("%s:%s" % (host, port))
    elif host:
        binds.extend(h.strip() for h in host.split(",") if h.strip())
    elif port:
        binds.append("127.0.0.1:%s" % port)
    for key in ("listen", "bind"):
        binds.extend(settings.pop(key, "").split())
    if binds:
        settings["bind"] = binds
    return settings


def command(global_conf, local_conf, app_name="main"):
    """The master's command line and the settings it gets through the
    environment, for the .ini file PasteDeploy read."""
    ini = os.path.abspath(global_conf["__file__"])
    settings = server_settings(local_conf)
    argv = [master(), "--paste", "%s#%s" % (ini, app_name)]
    config = settings.pop("config", None)
    if config:
        argv += ["-c", config]
    settings.setdefault("proc_name", ini)
    for key, value in sorted(global_conf.items()):
        if key not in _NOT_GLOBALS and value is not None:
            argv += ["--paste-global", "%s=%s" % (key, value)]
    return argv, {"file": ini, "settings": settings}


def serve(app, global_conf, **local_conf):
    """The ``paste.server_runner`` entry point ``main``: exec the ferrocorn
    master for the .ini file's ``main`` app (``app``, loaded by the caller,
    is left unused: every worker loads its own)."""
    argv, settings = command(global_conf, local_conf)
    env = dict(os.environ)
    env[SETTINGS_VAR] = json.dumps(settings)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
