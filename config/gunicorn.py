"""gunicorn settings for the web process (Procfile: ``gunicorn config.wsgi -c config/gunicorn.py``).

PORT and WEB_CONCURRENCY come from the platform; WEB_THREADS > 1 switches to threaded workers.
docs/operations.md explains the choice and the measured capacity.
"""

import os

_port = os.environ.get("PORT", "8000")
_host = "127.0.0.1" if os.environ.get("CONVEYOR_ENV") == "development" else "0.0.0.0"  # noqa: S104
bind = os.environ.get("BIND", f"{_host}:{_port}")
# Two sync workers per core: one computes while the other waits on PostgreSQL or Redis.
workers = int(os.environ.get("WEB_CONCURRENCY", str(2 * (os.cpu_count() or 1))))
threads = int(os.environ.get("WEB_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
keepalive = 5
timeout = 30
graceful_timeout = 20
# Recycle workers now and then so that a slow leak can never grow without bound.
max_requests = 20000
max_requests_jitter = 2000
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
