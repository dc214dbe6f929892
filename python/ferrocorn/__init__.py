"""ferrocorn: a pre-fork WSGI HTTP server for UNIX, in Rust, native to systemd.

The wheel installs the ``ferrocorn`` command (the master, a native
executable) into the environment's ``bin/`` and this package beside it;
workers run in the environment's interpreter and import the native module
``ferrocorn._native``.
"""

__all__ = ["__version__"]

from ferrocorn._native import __version__
