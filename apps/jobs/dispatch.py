"""The one place that publishes job messages to the broker.

Apps never import ``workers``: a run message names its task (``conveyor.run_job``) and carries only
the job id. Publishing happens after the row is committed (``publish_on_commit``) so a worker never
receives an id it cannot read; if the process dies between commit and publish, or the broker is
down, the job stays ``queued`` in the database and the maintenance loop publishes it again
(workers/maintenance.py). A message is only a wake-up call: the database decides who runs what.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction

from apps.jobs.models import Job

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "conveyor.run_job"

# Kombu's Redis transport serves lower numbers first (one list per step, BRPOP'd in order);
# RabbitMQ serves higher numbers first from a queue declared with x-max-priority.
_BROKER_PRIORITIES = {
    "redis": {"high": 0, "normal": 3, "low": 6},
    "amqp": {"high": 9, "normal": 5, "low": 1},
}
_SCHEME_FAMILY = {
    "redis": "redis",
    "rediss": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "pyamqp": "amqp",
}


def broker_priority(priority: str) -> int | None:
    table = _BROKER_PRIORITIES.get(_SCHEME_FAMILY.get(settings.BROKER_SCHEME, ""))
    return table[priority] if table else None


def publish_jobs(jobs: Sequence[Job]) -> int:
    """Publish one run message per job; returns how many were published.

    A failure is logged, not raised: the jobs are durable and stay ``queued``, and the
    maintenance loop re-publishes queued jobs whose message went missing.
    """
    if not jobs:
        return 0
    app = current_app
    grace = settings.JOB_TIMEOUT_GRACE_SECONDS
    published = 0
    try:
        with app.producer_or_acquire() as producer:
            for job in jobs:
                app.send_task(
                    RUN_JOB_TASK,
                    args=(str(job.id),),
                    queue=job.queue,
                    priority=broker_priority(job.priority),
                    soft_time_limit=job.timeout_seconds,
                    time_limit=job.timeout_seconds + grace,
                    headers={"conveyor_request_id": job.request_id},
                    producer=producer,
                    ignore_result=True,
                )
                published += 1
    except Exception:
        logger.exception(
            "publishing %d job message(s) failed after %d; the maintenance loop will retry",
            len(jobs),
            published,
        )
    return published


def publish_on_commit(jobs: Iterable[Job], *, using: str = "default") -> None:
    """Publish run messages for ``jobs`` once the current transaction commits."""
    batch = list(jobs)
    if batch:
        transaction.on_commit(partial(publish_jobs, batch), using=using)
