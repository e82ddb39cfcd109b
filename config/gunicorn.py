"""gunicorn settings for the web process (Procfile: ``gunicorn -c config/gunicorn.py``).

WEB_SERVER picks the application and the workers: ``asgi`` (the default) runs config/asgi.py on
uvicorn workers (config/web_worker.py), where a long-poll waits in the event loop; ``sync`` runs
config/wsgi.py on gunicorn's sync workers (threaded ones with WEB_THREADS > 1), where each
long-poll holds a worker for its whole wait. PORT and WEB_CONCURRENCY come from the platform.
docs/operations.md explains the choice and the measured capacity.
"""

import os
from typing import Any

_port = os.environ.get("PORT", "8000")
_host = "127.0.0.1" if os.environ.get("CONVEYOR_ENV") == "development" else "0.0.0.0"  # noqa: S104
bind = os.environ.get("BIND", f"{_host}:{_port}")
# Two sync workers per core: one computes while the other waits on PostgreSQL or Redis.
workers = int(os.environ.get("WEB_CONCURRENCY", str(2 * (os.cpu_count() or 1))))
threads = int(os.environ.get("WEB_THREADS", "1"))
_server = os.environ.get("WEB_SERVER", "asgi")
if _server not in ("asgi", "sync"):
    raise SystemExit(f"WEB_SERVER must be asgi or sync, not {_server!r}")
if _server == "asgi":
    wsgi_app = "config.asgi:application"
    worker_class = "config.web_worker.ConveyorUvicornWorker"
else:
    wsgi_app = "config.wsgi:application"
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
# Request-line and header limits above the application's (API_MAX_URL_BYTES,
# API_MAX_HEADER_BYTES, API_MAX_HEADERS_TOTAL_BYTES in config/settings.py), so that a long URL or
# header reaches Conveyor and is answered in the error shape (400 / 431) rather than by
# gunicorn's plain-text page. 0 lets gunicorn take request lines up to its own 1 MiB ceiling;
# a single header field over 64 KiB, or more than 100 of them, still gets gunicorn's 431.
limit_request_line = 0
limit_request_field_size = 65536
limit_request_fields = 100

# --- Observability ----------------------------------------------------------------------------
# Prometheus multiprocess mode: the master gives its workers one samples directory (set before
# any worker imports the app, removed at exit); /metrics in any worker adds up all of them.
# apps/core/metrics_dirs.py explains the layout.
_metrics_dir = None


def on_starting(server: object) -> None:
    global _metrics_dir
    from apps.core import metrics_dirs

    _metrics_dir = metrics_dirs.prepare("web")


def child_exit(server: object, worker: Any) -> None:
    from apps.core import metrics_dirs

    metrics_dirs.process_exited(worker.pid)


def on_exit(server: object) -> None:
    from apps.core import metrics_dirs

    metrics_dirs.remove(_metrics_dir)


# gunicorn's own lines (start-up, worker boots and timeouts) in the same format as the app's.
# Through logger_class rather than logconfig_dict: the latter also turns on gunicorn's access
# log, a second line per request that the app already writes (conveyor.access).
_production = os.environ.get("CONVEYOR_ENV", "production") == "production"
if os.environ.get("LOG_FORMAT", "json" if _production else "plain") == "json":
    import logging

    from gunicorn.glogging import Logger

    class JsonLogger(Logger):
        def setup(self, cfg: Any) -> None:
            from apps.core.logs import JsonFormatter

            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())
            # Python warnings as log records (JSON once the app's logging is configured),
            # not as bare text lines on stderr.
            logging.captureWarnings(True)

    logger_class = JsonLogger
