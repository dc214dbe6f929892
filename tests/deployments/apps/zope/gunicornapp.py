"""The wrapper Zope's documentation gives for serving Zope with Gunicorn:

    gunicorn -b localhost:8080 --threads 4 gunicornapp:application
"""
from Zope2.Startup.run import make_wsgi_app

wsgiapp = make_wsgi_app({}, "/opt/zope/instance/etc/zope.conf")


def application(*args, **kwargs):
    """Use this if you want to run Zope using gunicorn"""
    return wsgiapp(*args, **kwargs)
