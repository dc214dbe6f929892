"""An application factory, for the `MODULE:create_app()` and
`MODULE:create_app("arg")` forms of the app argument.

    ferrocorn factory:create_app()            -> "hi\\n"
    ferrocorn 'factory:create_app("hello")'   -> "hello\\n"
"""


def create_app(greeting="hi"):
    body = (greeting + "\n").encode("utf-8")

    def app(environ, start_response):
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


not_callable = "I am a string, not a WSGI application"
