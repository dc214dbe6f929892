"""`openerp.tools.config`: the library's configuration, which the
gunicorn.conf.py fills in at module level."""
config = {"addons_path": None, "hooks_log": None}
