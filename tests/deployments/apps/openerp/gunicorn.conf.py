# OpenERP 6.1's gunicorn.conf.py, as its documentation has it:
#   gunicorn openerp:wsgi.core.application -c gunicorn.conf.py
import openerp

bind = "127.0.0.1:8069"
pidfile = "/run/openerp/gunicorn.pid"
workers = 2
on_starting = openerp.wsgi.core.on_starting
when_ready = openerp.wsgi.core.when_ready
pre_request = openerp.wsgi.core.pre_request
post_request = openerp.wsgi.core.post_request
timeout = 240
max_requests = 2000

conf = openerp.tools.config
conf["addons_path"] = "/opt/openerp/addons"
conf["hooks_log"] = "/var/log/openerp/hooks.log"
