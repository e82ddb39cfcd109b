"""The maintenance loop's work: what keeps every accepted job moving to a terminal status.

Run by the scheduler process (Celery beat + a worker on the ``maintenance`` queue, see
workers/tasks.py). Each step is bounded (a batch at a time), claims rows with
``FOR UPDATE SKIP LOCKED`` and changes them with conditional updates, so two schedulers running
by mistake cannot double anything.

- promote: ``scheduled`` and ``retrying`` jobs whose ``run_at`` has come → ``queued`` + published.
- recover: ``running`` jobs whose heartbeat stopped (worker SIGKILLed, machine gone, process
  killed at its hard time limit) → queued again as a new attempt, or ``failed`` when attempts
  are used up (which also stops a poison job that kills its worker every time).
- wake stalled queues: ``queued`` jobs wait while the broker holds no wake-up for their queue
  (Redis restarted without persistence, a crash between commit and publish) → a new wake-up.
- purge: finished jobs older than the retention period, in small steps, within a time budget.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, F
from django.utils import timezone

from apps.core.db import update_returning
from apps.jobs.broker import queue_depths
from apps.jobs.dispatch import publish_on_commit, publish_wakeups, wakeups_for
from apps.jobs.models import IdempotencyRecord, Job, JobEvent, JobStatus
from apps.jobs.services import job_changed
from apps.jobs.transitions import change_job
from apps.jobs.webhook_events import EVENT_FOR_STATUS

logger = logging.getLogger("conveyor.maintenance")


def _locked_ids(queryset: Any, order: str, limit: int) -> list[Any]:
    return list(
        queryset.select_for_update(skip_locked=True)
        .order_by(order)
        .values_list("pk", flat=True)[:limit]
    )


def _events(jobs: list[Job], from_status: str, at: datetime, details: dict[str, Any]) -> None:
    JobEvent.objects.bulk_create(
        [
            JobEvent(
                job_id=job.pk,
                from_status=from_status,
                to_status=job.status,
                attempt=job.attempts,
                at=at,
                details=details,
            )
            for job in jobs
        ]
    )
    for job in jobs:
        job_changed.send(sender=Job, job=job, previous=from_status)


def jobs_promote_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Queue and publish scheduled and retrying jobs that are due. Returns how many."""
    now = now or timezone.now()
    promoted = 0
    for status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
        with transaction.atomic():
            ids = _locked_ids(Job.objects.filter(status=status, run_at__lte=now), "run_at", limit)
            if not ids:
                continue
            jobs = update_returning(
                Job.objects.filter(pk__in=ids, status=status),
                status=JobStatus.QUEUED,
                enqueued_at=now,
                version=F("version") + 1,
            )
            _events(jobs, status, now, {"reason": "due"})
            publish_on_commit(jobs)
            promoted += len(jobs)
    return promoted


def jobs_recover_stale(
    *, heartbeat_timeout: float, grace: float, now: datetime | None = None, limit: int = 500
) -> int:
    """Take back running jobs whose worker stopped beating. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=heartbeat_timeout)
    recovered = 0
    with transaction.atomic():
        ids = _locked_ids(
            Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff),
            "heartbeat_at",
            limit,
        )
        requeued: list[Job] = []
        for job in Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING):
            overran = job.started_at is not None and now > job.started_at + timedelta(
                seconds=job.timeout_seconds + grace
            )
            error = (
                {"code": "timeout", "message": "the job ran over its timeout and its worker died"}
                if overran
                else {
                    "code": "worker_lost",
                    "message": f"the worker ({job.worker or 'unknown'}) stopped heartbeating",
                }
            )
            if job.cancel_requested:
                target, extra = JobStatus.CANCELED, {"finished_at": now}
            elif job.attempts >= job.max_attempts:
                target, extra = JobStatus.FAILED, {"finished_at": now}
            else:
                target, extra = JobStatus.QUEUED, {"enqueued_at": now}
            changed = change_job(
                where={"id": job.pk, "status": JobStatus.RUNNING, "attempts": job.attempts},
                changes={"status": target, "error": error, "heartbeat_at": None, **extra},
                event=(JobStatus.RUNNING, now, {"error": error, "recovered": True}),
                webhook_event=EVENT_FOR_STATUS.get(target),
            )
            if changed is not None:
                job_changed.send(sender=Job, job=changed, previous=JobStatus.RUNNING)
                if target == JobStatus.QUEUED:
                    requeued.append(changed)
                recovered += 1
                logger.warning("recovered job %s from %s: %s", job.pk, job.worker, error["code"])
        publish_on_commit(requeued)
    return recovered


def jobs_wake_stalled(*, min_age: float, now: datetime | None = None) -> int:
    """Publish wake-ups for queues whose queued jobs wait while the broker holds no wake-up.

    That is the state a lost message leaves behind (Redis restarted without persistence, a
    crash between commit and publish, a broker outage during submission). Returns how many
    wake-ups were published. One is enough to drain a queue; a spare one costs an empty claim.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=min_age)
    waiting = dict(
        Job.objects.filter(status=JobStatus.QUEUED, held=False, enqueued_at__lt=cutoff)
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


def _purge_statement(vendor: str) -> str:
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
    if vendor == "postgresql":
        chosen += " FOR UPDATE SKIP LOCKED"
        target = f'"id" = ANY(ARRAY({chosen}))'
    else:
        target = f'"id" IN ({chosen})'
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
        cursor.execute(_purge_statement(connection.vendor), params)
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
    deadline = time.monotonic() + budget
    deleted = 0
    while True:
        step = jobs_purge_step(cutoff=cutoff, batch_size=batch_size)
        deleted += step
        if step < batch_size or time.monotonic() >= deadline:
            break
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
