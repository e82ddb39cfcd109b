"""The one place that wakes worker pools.

A broker message names a queue, not a job: ``conveyor.run_jobs(queue)`` tells a worker of that
pool "there is work"; the worker then claims queued jobs from the database, highest priority
first, oldest first, until the queue is empty or its time budget is spent (workers/runtime.py).
The database is the queue's source of truth and ordering; messages are interchangeable hints.
That is what makes Conveyor robust and fast:

- a lost message loses nothing: any other wake-up drains the same jobs, and the maintenance loop
  publishes one when queued jobs wait while the broker queue is empty;
- a duplicate message costs one empty claim, never a second run;
- priorities are exact on every broker (a ``high`` job is claimed before 10 000 ``low`` ones);
- a batch of 1 000 jobs needs a handful of messages, not 1 000.

Apps never import ``workers``: messages name their task (``conveyor.run_jobs``). A wake-up is
sent only after the jobs' transaction commits. The transaction itself carries it out as
``NOTIFY conveyor_wakeup`` (delivered at commit), and the relay in the scheduler process turns
notifications into broker messages (apps/jobs/relay.py): the web process never waits on the
broker. With ``WAKEUP_RELAY=false`` it is published from an on-commit hook instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import connections, transaction

from apps.core.context import current_request_id
from apps.jobs.models import Job
from apps.jobs.queues import RUN_JOBS_TASK, TASK_FOR_QUEUE

logger = logging.getLogger(__name__)

CHANNEL = "conveyor_wakeup"


def wakeups_for(job_count: int) -> int:
    """How many workers to wake for ``job_count`` newly queued jobs of one queue."""
    return max(1, min(job_count, settings.WORKER_WAKEUP_FANOUT))


def publish_wakeups(counts: Mapping[str, int]) -> int:
    """Publish ``counts[queue]`` wake-ups per queue now. Returns how many were published.

    A failure is logged, not raised: the jobs are durable and stay ``queued``; the maintenance
    loop wakes their pool when the broker is back.
    """
    app = current_app
    published = 0
    # The publisher's request id, where there is one (a wake-up sent from a web request): a
    # hint for tracing the message. Jobs carry their own (Job.request_id); a wake-up names none.
    request_id = current_request_id()
    headers = {"request_id": request_id} if request_id else None
    try:
        with app.producer_or_acquire() as producer:
            for queue, count in counts.items():
                for _ in range(count):
                    app.send_task(
                        TASK_FOR_QUEUE.get(queue, RUN_JOBS_TASK),
                        args=(queue,),
                        queue=queue,
                        producer=producer,
                        ignore_result=True,
                        headers=headers,
                    )
                    published += 1
    except Exception:
        logger.exception(
            "publishing %d wake-up(s) failed after %d; the maintenance loop will retry",
            sum(counts.values()),
            published,
        )
    return published


def publish_wakeup_in(queue: str, seconds: float) -> None:
    """One wake-up for ``queue`` delivered in ``seconds`` (a rate window that ends then: the
    waiting jobs are started when their slot opens, not polled for). Failures are logged."""
    try:
        current_app.send_task(
            TASK_FOR_QUEUE.get(queue, RUN_JOBS_TASK),
            args=(queue,),
            queue=queue,
            countdown=max(0.0, seconds),
            ignore_result=True,
        )
    except Exception:
        logger.exception("publishing a delayed wake-up for %s failed", queue)


def publish_jobs(jobs: Iterable[Job]) -> int:
    """Wake the pools of these queued jobs now (synchronously)."""
    per_queue = Counter(job.queue for job in jobs)
    return publish_wakeups({q: wakeups_for(n) for q, n in per_queue.items()})


# --- Wake-ups that travel with the transaction ------------------------------------------------


def uses_relay(using: str = "default") -> bool:
    """Whether transactions on ``using`` NOTIFY the relay (WAKEUP_RELAY, the same for every
    alias) instead of publishing wake-ups after commit."""
    return settings.WAKEUP_RELAY


def notify_payload(per_queue: Mapping[str, int]) -> str:
    return " ".join(f"{queue}:{count}" for queue, count in sorted(per_queue.items()))


def parse_payload(payload: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for item in payload.split():
        queue, _, count = item.rpartition(":")
        if queue and count.isdigit():
            counts[queue] += int(count)
    return counts


def publish_on_commit(jobs: Iterable[Job], *, using: str = "default") -> None:
    """Wake the pools of ``jobs`` once the current transaction commits."""
    publish_on_commit_counts(Counter(job.queue for job in jobs), using=using)


def publish_on_commit_counts(per_queue: Mapping[str, int], *, using: str = "default") -> None:
    """Wake ``per_queue[queue]`` workers per queue once the current transaction commits."""
    per_queue = Counter({q: n for q, n in per_queue.items() if n})
    if not per_queue:
        return
    if uses_relay(using):
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, notify_payload(per_queue)])
    else:
        transaction.on_commit(partial(publish_wakeups, _wanted(per_queue)), using=using)


def _wanted(per_queue: Counter[str]) -> dict[str, int]:
    return {q: wakeups_for(n) for q, n in per_queue.items()}
