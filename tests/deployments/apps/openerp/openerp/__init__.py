"""A stand-in for OpenERP 6.1's server library, as its documented
gunicorn.conf.py drives it: the library serves only once on_starting (in
the master, before the workers are forked) has initialised it, and
pre_request/post_request see each request."""
from openerp import service, tools, wsgi  # noqa: F401

# Set by on_starting, as OpenERP's was.
multi_process = False
