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

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

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
