"""The one place that publishes to the broker: wake-up calls for worker pools.

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

Apps never import ``workers``: messages name their task (``conveyor.run_jobs``). Publishing
happens after the transaction commits (``publish_on_commit``), so a woken worker always sees the
rows. In the web process a background thread does the publishing (``start_background_publisher``,
called from gunicorn's post_fork hook) so that a request never waits on the broker, and wake-ups
for one queue requested close together are coalesced.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
from collections import Counter
from collections.abc import Iterable
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction

from apps.jobs.models import Job

logger = logging.getLogger(__name__)

RUN_JOBS_TASK = "conveyor.run_jobs"


def wakeups_for(job_count: int) -> int:
    """How many workers to wake for ``job_count`` newly queued jobs of one queue."""
    return max(1, min(job_count, settings.WORKER_WAKEUP_FANOUT))


def publish_wakeups(counts: dict[str, int]) -> int:
    """Publish ``counts[queue]`` wake-ups per queue. Returns how many were published.

    A failure is logged, not raised: the jobs are durable and stay ``queued``; the maintenance
    loop wakes their pool when the broker is back.
    """
    app = current_app
    published = 0
    try:
        with app.producer_or_acquire() as producer:
            for queue, count in counts.items():
                for _ in range(count):
                    app.send_task(
                        RUN_JOBS_TASK,
                        args=(queue,),
                        queue=queue,
                        producer=producer,
                        ignore_result=True,
                    )
                    published += 1
    except Exception:
        logger.exception(
            "publishing %d wake-up(s) failed after %d; the maintenance loop will retry",
            sum(counts.values()),
            published,
        )
    return published


def publish_jobs(jobs: Iterable[Job]) -> int:
    """Wake the pools of these queued jobs now (synchronously)."""
    per_queue = Counter(job.queue for job in jobs)
    return publish_wakeups({q: wakeups_for(n) for q, n in per_queue.items()})


class BackgroundPublisher:
    """Publishes wake-ups from a daemon thread, coalescing those requested meanwhile."""

    def __init__(self) -> None:
        self._pending: queue_module.SimpleQueue[tuple[str, int]] = queue_module.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="conveyor-publisher", daemon=True)
        self._thread.start()

    def submit(self, per_queue: Counter[str]) -> None:
        for queue, count in per_queue.items():
            self._pending.put((queue, count))

    def _run(self) -> None:
        while True:
            queue, count = self._pending.get()
            jobs = Counter({queue: count})
            while True:  # take whatever else arrived while we were busy
                try:
                    queue, count = self._pending.get_nowait()
                except queue_module.Empty:
                    break
                jobs[queue] += count
            publish_wakeups({q: wakeups_for(n) for q, n in jobs.items()})


_background: BackgroundPublisher | None = None


def start_background_publisher() -> None:
    """Publish from a background thread in this process (the web server's workers)."""
    global _background
    if _background is None:
        _background = BackgroundPublisher()


def _publish_after_commit(per_queue: Counter[str]) -> None:
    if _background is not None:
        _background.submit(per_queue)
    else:
        publish_wakeups({q: wakeups_for(n) for q, n in per_queue.items()})


def publish_on_commit(jobs: Iterable[Job], *, using: str = "default") -> None:
    """Wake the pools of ``jobs`` once the current transaction commits."""
    per_queue = Counter(job.queue for job in jobs)
    if per_queue:
        transaction.on_commit(partial(_publish_after_commit, per_queue), using=using)
