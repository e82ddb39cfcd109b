"""A worker's own Prometheus endpoint and its liveness heartbeat.

Started in the main process of ``celery worker --metrics-port N`` (config/celery_app.py). The
endpoint adds up the samples of the worker's pool processes (prometheus-client multiprocess
mode, one directory per worker: apps/core/metrics_dirs.py) and answers with the same access rules
as the web's /metrics. Deployment-wide gauges (queue depths, live workers) are the web's: a
worker reports only what its own processes did, so Prometheus can sum over every target.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from prometheus_client.exposition import ThreadingWSGIServer

from apps.core import metrics
from apps.jobs.fleet import worker_gone, worker_heartbeat

logger = logging.getLogger("conveyor.worker")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the worker's log."""


def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if not metrics.access_allowed(
        environ,
        allowed_networks=settings.METRICS_ALLOWED_NETWORKS,
        token=settings.METRICS_TOKEN,
    ):
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"forbidden\n"]
    body = metrics.render(deployment=False)
    start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE)])
    return [body]


class WorkerMetrics:
    """The endpoint's server thread and the heartbeat thread of one worker."""

    def __init__(self, *, name: str, queues: list[str], processes: int) -> None:
        self.name, self.queues, self.processes = name, queues, processes
        self._stop = threading.Event()
        self._server: ThreadingWSGIServer | None = None
        self._heartbeat = threading.Thread(
            target=self._beat, name="conveyor-worker-heartbeat", daemon=True
        )

    def start(self, port: int | None) -> None:
        logger.info(
            "worker %s: queues %s, %d pool processes",
            self.name,
            ",".join(self.queues),
            self.processes,
            extra={"worker": self.name, "queues": self.queues, "processes": self.processes},
        )
        if port is not None:
            if not metrics.multiprocess_dir():
                logger.error(
                    "metrics: prometheus-client is not in multiprocess mode; the pool's "
                    "samples will not be visible on port %s",
                    port,
                )
            try:
                self._server = make_server(
                    settings.WORKER_METRICS_BIND,
                    port,
                    metrics_app,
                    ThreadingWSGIServer,
                    handler_class=_QuietHandler,
                )
            except OSError as exc:
                # Never let metrics keep a worker from running jobs.
                logger.error("metrics: cannot listen on port %s (%s); no endpoint", port, exc)
            else:
                threading.Thread(
                    target=self._server.serve_forever, name="conveyor-metrics", daemon=True
                ).start()
                logger.info("metrics on http://%s:%s/metrics", settings.WORKER_METRICS_BIND, port)
        self._heartbeat.start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        try:
            worker_gone(name=self.name)
        except Exception:
            logger.warning("could not remove worker %s from the live list", self.name)

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                worker_heartbeat(name=self.name, queues=self.queues, processes=self.processes)
            except Exception:
                logger.warning("worker heartbeat failed", exc_info=True)
            self._stop.wait(settings.WORKER_HEARTBEAT_SECONDS)
