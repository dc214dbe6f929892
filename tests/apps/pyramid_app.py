"""A Pyramid app, made by its paste.app_factory as `pcreate`'s scaffolds
make theirs: `main(global_config, **settings)`."""
import os

from pyramid.config import Configurator
from pyramid.response import Response


def hello(request):
    settings = request.registry.settings
    body = "%s from %s (worker %d)\n" % (settings.get("greeting"), request.path, os.getpid())
    return Response(body, content_type="text/plain")


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.add_route("hello", "/hello")
        config.add_view(hello, route_name="hello")
        return config.make_wsgi_app()
