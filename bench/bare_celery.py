"""The baseline: a bare Celery app with a no-op task, on the same broker and concurrency.

Used by bench/run.py to measure what Celery alone drains on this machine, so that Conveyor's
pipeline throughput is reported as a ratio taken in the same run. Start/stop marker tasks write
their time to Redis; the no-op tasks do nothing at all.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis
from celery import Celery, signals

BROKER = os.environ["BARE_BROKER_URL"]
MARKS = redis.Redis.from_url(BROKER)

app = Celery("bare", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bare",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@signals.worker_ready.connect
def _announce_ready(**kwargs: object) -> None:
    path = os.environ.get("CELERY_READY_FILE")
    if path:
        Path(path).touch()


@app.task(name="bare.noop")
def noop() -> None:
    return None


@app.task(name="bare.mark")
def mark(name: str) -> None:
    MARKS.set(f"bare:{name}", repr(time.time()))
