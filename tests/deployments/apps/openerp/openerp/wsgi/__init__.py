from openerp.wsgi import core  # noqa: F401
