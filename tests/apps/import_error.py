"""A module that fails while it is imported: the master must stop with exit 4.

The exception type and message are distinctive so the test can find them in
the one-line error on stderr.
"""


class ImportTimeBoom(Exception):
    """Raised at import time."""


raise ImportTimeBoom("import_error.py refuses to be imported")


def app(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
