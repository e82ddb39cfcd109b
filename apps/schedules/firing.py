"""The firing step of the maintenance loop: due schedules → one job each, exactly once per tick.

A batch of due schedules (enabled, ``next_run_at`` come, client active) is claimed with
``SELECT … FOR UPDATE SKIP LOCKED`` in one transaction; for each, the job is submitted through
the jobs services (``job_submit``: validation, quota, fair dispatch; the job row carries the
schedule's id) and the schedule's ``next_run_at``, ``last_run_at`` and ``last_job_id`` are
written, all before the one COMMIT. Hence:

- **At most once per tick.** A schedule row is held by one transaction at a time; another
  scheduler skips it (SKIP LOCKED) and, once the first commits, no longer finds it due
  (PostgreSQL re-checks ``next_run_at <= now`` on the row's committed version). The job and
  the move of ``next_run_at`` commit together, so a tick's job exists if and only if the tick
  is consumed.
- **Never lost by a crash.** A scheduler that dies mid-batch commits nothing: the schedules
  stay due and the next step (of any scheduler) fires them.
- **Missed ticks fire once.** ``next_run_at`` moves to the first tick after *now*, not after
  the tick that fired: a scheduler back after an hour fires an every-minute schedule once, then
  resumes on the minute, with no burst of catch-ups.
- **Skipped, not retried.** A tick whose job cannot be submitted (overlap=skip and the last job
  still active; the client at its active-jobs quota; a job that no longer validates) is
  consumed and recorded (``last_skipped_at``, ``last_skip_reason``), inside a savepoint so the
  rest of the batch goes on.
- **Inactive clients wait.** A deactivated client's schedules are not claimed; like its held
  jobs (apps/jobs/holds.py) they lose nothing: reactivated, a due schedule fires once.

Each consumed tick is counted (fired, or skipped by reason) and its lag observed once the batch
commits (apps/schedules/instrumentation.py). One schedule costs a few statements (the overlap
probe, the quota count, the job INSERT, the schedule UPDATE); a batch is
``SCHEDULES_FIRE_BATCH_SIZE`` schedules and a run goes on while batches come back full, for at
most ``STEP_MAX_SECONDS`` (apps/jobs/maintenance.py).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import ConveyorError, QuotaExceeded
from apps.jobs.maintenance import STEP_MAX_SECONDS, _in_batches
from apps.schedules.cron import next_tick
from apps.schedules.instrumentation import record_tick
from apps.schedules.models import Overlap, Schedule, SkipReason
from apps.schedules.services import previous_run_active, submit_run

logger = logging.getLogger("conveyor.maintenance")


def _skip(schedule: Schedule, reason: SkipReason, now: datetime) -> None:
    schedule.last_skipped_at = now
    schedule.last_skip_reason = reason


def _fire_one(schedule: Schedule, now: datetime) -> bool:
    """Fire (or skip) one claimed schedule and move it to its next tick. Returns whether a job
    was submitted."""
    fired = False
    due = schedule.next_run_at
    if schedule.overlap == Overlap.SKIP and previous_run_active(schedule):
        _skip(schedule, SkipReason.OVERLAP, now)
    else:
        try:
            # A savepoint: a refused submission leaves the batch's transaction usable.
            with transaction.atomic():
                submit_run(schedule, client=schedule.client, now=now)
            fired = True
        except QuotaExceeded:
            _skip(schedule, SkipReason.QUOTA_EXCEEDED, now)
        except ConveyorError as exc:  # ValidationFailed, PayloadTooLarge
            _skip(schedule, SkipReason.INVALID_JOB, now)
            logger.warning(
                "schedule %s: its job is no longer valid (%s): %s",
                schedule.pk,
                exc.code,
                exc.details,
            )
    record_tick(due=due, now=now, skip_reason=None if fired else schedule.last_skip_reason)
    schedule.next_run_at = next_tick(schedule.cron, schedule.timezone, after=now)
    if schedule.next_run_at is None:
        schedule.enabled = False  # it will never fire again
    schedule.save(
        update_fields=[
            "next_run_at",
            "enabled",
            "last_run_at",
            "last_job_id",
            "last_skipped_at",
            "last_skip_reason",
        ]
    )
    return fired


def schedules_fire_due_batch(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Claim up to ``limit`` due schedules and fire each (see the module's docstring), all in
    one transaction. Returns how many were claimed (fired or skipped)."""
    now = now or timezone.now()
    limit = limit or settings.SCHEDULES_FIRE_BATCH_SIZE
    with transaction.atomic():
        due = list(
            Schedule.objects.filter(enabled=True, next_run_at__lte=now, client__is_active=True)
            .select_related("client")
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_run_at")[:limit]
        )
        fired = sum(_fire_one(schedule, now) for schedule in due)
    if due:
        logger.info("schedules: %s due, %s fired, %s skipped", len(due), fired, len(due) - fired)
    return len(due)


def schedules_fire_due(
    *, now: datetime | None = None, limit: int | None = None, max_seconds: float = STEP_MAX_SECONDS
) -> int:
    """Fire due schedules, a batch at a time while batches come back full, for at most
    ``max_seconds``. Returns how many were claimed."""
    limit = limit or settings.SCHEDULES_FIRE_BATCH_SIZE
    return _in_batches(lambda: schedules_fire_due_batch(now=now, limit=limit), limit, max_seconds)
