bind = "127.0.0.1:8050"
workers = 2
graceful_timeout = 10
