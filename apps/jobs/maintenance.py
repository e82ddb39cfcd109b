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
- purge: finished jobs older than the retention period, in small batches.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from apps.core.db import update_returning
from apps.jobs.broker import queue_depths
from apps.jobs.dispatch import publish_on_commit, publish_wakeups, wakeups_for
from apps.jobs.models import TERMINAL_STATUSES, IdempotencyRecord, Job, JobEvent, JobStatus
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
        Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=cutoff)
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


def jobs_purge_finished(
    *, older_than: timedelta, batch_size: int = 1000, max_batches: int = 50
) -> int:
    """Delete finished jobs (and their events) older than ``older_than``, a batch at a time.

    Small batches keep each transaction short and each lock brief, however large the backlog:
    never one multi-million-row DELETE.
    """
    cutoff = timezone.now() - older_than
    deleted = 0
    for _ in range(max_batches):
        with transaction.atomic():
            ids = list(
                Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff)
                .order_by("finished_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            # Events (and webhook deliveries) go with their job through ON DELETE CASCADE in
            # the database; nothing is loaded into memory.
            Job.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
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
