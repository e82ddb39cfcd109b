"""The one Celery app.

Configuration comes from Django settings under the ``CELERY_`` namespace (config/settings.py).
Task code lives in ``workers/``; the web process only publishes by task name through
``apps.jobs.dispatch``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from celery import Celery, bootsteps, signals

from apps.core import metrics_dirs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

_metrics_dir: Path | None = None


@signals.import_modules.connect
def _prepare_metrics(**kwargs: Any) -> None:
    """Give this worker (and the pool it forks) its own Prometheus samples directory.

    import_modules is the first thing a starting worker does, and this receiver is connected
    before the Django fix-up's, which starts Django and so creates Conveyor's metrics: their
    values must be created in multiprocess mode, or the pool's samples never reach the scrape.
    """
    global _metrics_dir
    if _metrics_dir is None:
        _metrics_dir = metrics_dirs.prepare("worker")


app = Celery("conveyor", fixups=["config.celery_fixup:fixup"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.include = ["workers.tasks"]


class WakeupRelayStep(bootsteps.StartStopStep):
    """``celery worker --relay``: run the wake-up relay (apps/jobs/relay.py) in this worker.

    The Procfile's scheduler runs it; one relay per deployment is enough (a second one only
    doubles wake-ups, which are harmless).
    """

    def __init__(self, parent: Any, relay: bool = False, **options: Any) -> None:
        self.enabled = bool(relay)
        self.relay: Any = None
        super().__init__(parent, **options)

    def start(self, parent: Any) -> None:
        from apps.jobs.relay import start_relay

        self.relay = start_relay()

    def stop(self, parent: Any) -> None:
        if self.relay is not None:
            self.relay.stop()


class WorkerMetricsStep(bootsteps.StartStopStep):
    """``celery worker --metrics-port N``: serve this worker's Prometheus metrics on port N,
    and record the worker in the live list that the web's /metrics counts (always, even
    without a port). See workers/metrics_server.py."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, metrics_port: int | None = None, **options: Any) -> None:
        self.port = metrics_port
        self.metrics: Any = None
        super().__init__(parent, **options)

    def start(self, parent: Any) -> None:
        from workers.metrics_server import WorkerMetrics

        queues = sorted(parent.app.amqp.queues.consume_from or parent.app.amqp.queues)
        self.metrics = WorkerMetrics(
            name=parent.hostname, queues=queues, processes=int(parent.concurrency or 1)
        )
        self.metrics.start(self.port)

    def stop(self, parent: Any) -> None:
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None


@signals.celeryd_init.connect
def _json_output(instance: Any = None, **kwargs: Any) -> None:
    """With JSON logs, keep the worker's output JSON: no start-up banner (a block of text;
    the metrics step logs the queues and pool size instead) and Python warnings through
    logging (celery warns about root right after this signal)."""
    import logging

    from django.conf import settings

    if settings.LOG_FORMAT == "json" and instance is not None:
        instance.quiet = True
        logging.captureWarnings(True)


@signals.worker_process_shutdown.connect
def _pool_process_exits(**kwargs: Any) -> None:
    metrics_dirs.process_exited(os.getpid())


@signals.worker_shutdown.connect
def _remove_metrics_dir(**kwargs: Any) -> None:
    metrics_dirs.remove(_metrics_dir)


app.user_options["worker"].add(
    click.Option(
        ("--metrics-port",),
        type=int,
        default=None,
        help="Serve this worker's Prometheus metrics on this port (all interfaces in production; "
        "WORKER_METRICS_BIND).",
    )
)
app.steps["worker"].add(WorkerMetricsStep)
app.user_options["worker"].add(
    click.Option(
        ("--relay",),
        is_flag=True,
        default=False,
        help="Relay PostgreSQL wake-up notifications to the broker (the scheduler does).",
    )
)
app.steps["worker"].add(WakeupRelayStep)


@signals.worker_ready.connect
def _announce_ready(**kwargs: Any) -> None:
    """Touch $CELERY_READY_FILE once the worker consumes: a readiness probe for orchestrators
    (and the benchmarks) that works whatever the log level."""
    path = os.environ.get("CELERY_READY_FILE")
    if path:
        Path(path).touch()
