"""The maintenance loop's work: what keeps every accepted job moving to a terminal status.

Run by the scheduler process (Celery beat + a worker on the ``maintenance`` queue, see
workers/tasks.py). Each step is bounded (a batch at a time, a time budget per run); the changes
of a job's status are services (apps/jobs/services.py), which claim rows with
``FOR UPDATE SKIP LOCKED`` and change them with conditional updates, so two schedulers running
by mistake cannot double anything.

- promote: ``scheduled`` and ``retrying`` jobs whose ``run_at`` has come → ``queued`` + published.
- recover: ``running`` jobs whose heartbeat stopped (worker SIGKILLed, machine gone, process
  killed at its hard time limit) → a failed attempt, decided as ``job_fail`` decides one:
  retried after its backoff (at once when its last heartbeat is older than that), ``failed``
  when attempts are used up (which also stops a poison job that kills its worker every time)
  or when it overran its timeout and its type does not retry timeouts.
- wake stalled queues: ``queued`` jobs wait while the broker holds no wake-up for their queue
  (Redis restarted without persistence, a crash between commit and publish) → a new wake-up.
- purge: finished jobs older than the retention period, in small steps, within a time budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count
from django.utils import timezone

from apps.jobs import services
from apps.jobs.broker import queue_depths
from apps.jobs.dispatch import publish_wakeups, wakeups_for
from apps.jobs.models import IdempotencyRecord, Job, JobStatus

logger = logging.getLogger("conveyor.maintenance")


# One run of a step goes on while it finds full batches, for at most this long.
STEP_MAX_SECONDS = 1.0


def _in_batches(step: Callable[[], int], limit: int, max_seconds: float) -> int:
    """Run ``step`` (one batch, returning how many rows it changed) until a batch comes back
    short or ``max_seconds`` have been spent; at least once. Returns the total."""
    deadline = time.monotonic() + max_seconds
    total = 0
    while True:
        done = step()
        total += done
        if done < limit or time.monotonic() >= deadline:
            return total


def jobs_promote_due(
    *, now: datetime | None = None, limit: int = 1000, max_seconds: float = STEP_MAX_SECONDS
) -> int:
    """Queue and wake the pools of scheduled and retrying jobs that are due, ``limit`` of each
    status per batch (``services.jobs_promote_due_batch``). Returns how many."""
    now = now or timezone.now()
    return _in_batches(
        lambda: services.jobs_promote_due_batch(now=now, limit=limit), limit, max_seconds
    )


def jobs_recover_stale(
    *,
    heartbeat_timeout: float,
    grace: float,
    now: datetime | None = None,
    limit: int = 500,
    max_seconds: float = STEP_MAX_SECONDS,
) -> int:
    """Take back running jobs whose worker stopped beating, ``limit`` per batch
    (``services.jobs_recover_stale_batch`` decides each). Returns how many."""
    now = now or timezone.now()
    return _in_batches(
        lambda: services.jobs_recover_stale_batch(
            heartbeat_timeout=heartbeat_timeout, grace=grace, now=now, limit=limit
        ),
        limit,
        max_seconds,
    )


def jobs_wake_stalled(*, min_age: float, now: datetime | None = None) -> int:
    """Publish wake-ups for queues whose queued jobs wait while the broker holds no wake-up.

    That is the state a lost message leaves behind (Redis restarted without persistence, a
    crash between commit and publish, a broker outage during submission). Returns how many
    wake-ups were published. One is enough to drain a queue; a spare one costs an empty claim.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=min_age)
    waiting = dict(
        Job.objects.filter(
            status=JobStatus.QUEUED, held=False, pending_dependencies=0, enqueued_at__lt=cutoff
        )
        .values_list("queue")
        .annotate(n=Count("pk"))
        .order_by()
    )
    if not waiting:
        return 0
    depths = queue_depths(sorted(waiting))
    stalled = {
        queue: wakeups_for(count) for queue, count in waiting.items() if depths.get(queue) == 0
    }
    for queue, count in stalled.items():
        logger.warning(
            "queue %s: %s job(s) queued for over %ss and no wake-up in the broker; publishing %s",
            queue,
            waiting[queue],
            min_age,
            count,
        )
    return publish_wakeups(stalled) if stalled else 0


def _purge_statement() -> str:
    """One purge step: delete up to ``n`` finished jobs older than the cutoff, oldest first.

    The rows are chosen and locked by the same statement that deletes them (``FOR UPDATE SKIP
    LOCKED``), and the outer ``WHERE`` says again that they are finished and old: a job that
    someone is changing right now (a retry in an open transaction) is skipped, not waited for,
    and a job whose change committed before the step is no longer finished, so no step can
    delete a job that was brought back to life. ``= ANY(ARRAY(…))`` makes PostgreSQL run the
    subquery once (``IN (…)`` may be planned as a join that re-runs it).
    """
    # Only the table's quoted name is formatted in; every value is a parameter.
    table = connections["default"].ops.quote_name(Job._meta.db_table)
    finished = "\"status\" IN ('succeeded', 'failed', 'canceled') AND \"finished_at\" < %(cutoff)s"
    chosen = " ".join(
        ['SELECT "id" FROM', table, "WHERE", finished, 'ORDER BY "finished_at" LIMIT %(n)s']
    )
    target = f'"id" = ANY(ARRAY({chosen} FOR UPDATE SKIP LOCKED))'
    return " ".join(["DELETE FROM", table, "WHERE", target, "AND", finished])


def jobs_purge_step(*, cutoff: datetime, batch_size: int) -> int:
    """Delete up to ``batch_size`` finished jobs that finished before ``cutoff``, with their
    events, webhook deliveries and delivery attempts (``ON DELETE CASCADE`` in the database,
    each found through an index on its foreign key; nothing is loaded into memory). One
    statement, its own short transaction. Returns how many jobs went."""
    connection = connections["default"]
    params = {
        "cutoff": Job._meta.get_field("finished_at").get_db_prep_value(cutoff, connection),
        "n": batch_size,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_purge_statement(), params)
        return max(cursor.rowcount, 0)


def jobs_purge_finished(
    *,
    older_than: timedelta,
    batch_size: int | None = None,
    max_seconds: float | None = None,
    now: datetime | None = None,
) -> int:
    """Delete finished jobs older than ``older_than``, a step of ``batch_size`` at a time, until
    none is left or ``max_seconds`` have been spent (the next run goes on from there).

    Small steps keep each transaction short and each lock brief however large the backlog
    (never one multi-million-row DELETE); the time budget keeps one run from holding the
    maintenance worker. docs/operations.md ("Retention") sizes both against the pipeline's rate.
    A job retried while the purge runs is never deleted (see ``_purge_statement``).
    """
    batch_size = batch_size or settings.JOB_PURGE_BATCH_SIZE
    budget = settings.JOB_PURGE_MAX_SECONDS if max_seconds is None else max_seconds
    cutoff = (now or timezone.now()) - older_than
    deleted = _in_batches(
        lambda: jobs_purge_step(cutoff=cutoff, batch_size=batch_size), batch_size, budget
    )
    if deleted:
        logger.info("purged %s finished job(s) older than %s", deleted, older_than)
    return deleted


def idempotency_records_purge(*, older_than: timedelta, batch_size: int = 5000) -> int:
    """Delete Idempotency-Key records past their retention, a batch at a time."""
    cutoff = timezone.now() - older_than
    deleted = 0
    while True:
        ids = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not ids:
            return deleted
        IdempotencyRecord.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
