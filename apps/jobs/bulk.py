"""Retry or cancel every job matching an admin filter, in the background.

The console's confirmation page creates a ``JobBulkAction`` (with the list's query string and how
many jobs matched) and audits it; the maintenance worker runs it (``conveyor.maintenance.
bulk_actions``, also published at once when the action is confirmed): it walks the matching jobs
by ascending id, ``CHUNK`` at a time, and hands each job to the same service the API uses
(``jobs_retry_many`` / ``jobs_cancel_many``: ``job_retry``'s and ``job_cancel``'s changes, made
set-wise), so every job gets its event, its status-cache update, its webhook and its wake-up.
Each chunk is one short transaction that locks only its own rows: the admin, the API and the
workers go on while it runs. Progress is
written after every chunk; a run that stops (a worker killed) is taken over by the next tick
once its heartbeat is stale, from its cursor.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.core.ids import uuid7
from apps.jobs import services
from apps.jobs.models import (
    TERMINAL_STATUSES,
    BulkActionStatus,
    Job,
    JobBulkAction,
    JobStatus,
)
from apps.jobs.search import matching_jobs

logger = logging.getLogger(__name__)

BULK_TASK = "conveyor.maintenance.bulk_actions"
CHUNK = 500
# A run whose heartbeat is older than this is taken over by the next tick.
STALE_AFTER = timedelta(seconds=60)
# Counted exactly up to this many for the confirmation page; beyond, "more than".
COUNT_CAP = 1_000_000

# Which jobs each action can change: the others matching the filter are left alone.
ELIGIBLE = {
    "retry": Q(status__in=[JobStatus.FAILED, JobStatus.CANCELED]),
    "cancel": ~Q(status__in=sorted(TERMINAL_STATUSES)),
}


def _params(query: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}


def bulk_targets(action: str, query: str) -> QuerySet[Job]:
    """The jobs ``action`` would change for the list's query string."""
    return matching_jobs(_params(query)).filter(ELIGIBLE[action])


def bulk_count(action: str, query: str) -> int:
    return bulk_targets(action, query).order_by()[:COUNT_CAP].count()


def bulk_action_create(*, user: Any, action: str, query: str) -> JobBulkAction:
    """Record a confirmed bulk action, audit it, and wake the maintenance worker for it."""
    from apps.staff.services import audit_record

    expected = bulk_count(action, query)
    with transaction.atomic():
        bulk = JobBulkAction.objects.create(
            action=action,
            query=query[:2000],
            requested_by=user.get_username()[:150],
            requested_at=timezone.now(),
            expected=expected,
            # Jobs created after the confirmation are not part of it.
            upto=uuid7(),
        )
        audit_record(
            user=user,
            action=f"bulk_{action}",
            model="jobs.job",
            object_count=expected,
            outcome=f"bulk action #{bulk.pk} queued; filter: {query or '(none)'}",
        )
        transaction.on_commit(publish_bulk_wakeup)
    return bulk


def publish_bulk_wakeup() -> None:
    from celery import current_app

    try:
        current_app.send_task(BULK_TASK)
    except Exception:  # the beat's next tick runs it anyway
        logger.warning("bulk action wake-up not published", exc_info=True)


def _claim(now: Any) -> JobBulkAction | None:
    """Take the oldest open bulk action that nobody runs (or whose runner went quiet)."""
    open_actions = JobBulkAction.objects.filter(
        Q(status=BulkActionStatus.PENDING)
        | Q(status=BulkActionStatus.RUNNING, heartbeat_at__lt=now - STALE_AFTER)
    ).order_by("id")
    for candidate in open_actions[:5]:
        taken = JobBulkAction.objects.filter(
            pk=candidate.pk, status=candidate.status, heartbeat_at=candidate.heartbeat_at
        ).update(status=BulkActionStatus.RUNNING, heartbeat_at=now)
        if taken:
            candidate.refresh_from_db()
            return candidate
    return None


def bulk_action_step(bulk: JobBulkAction, *, chunk: int = CHUNK) -> bool:
    """Handle the next chunk of ``bulk``; False when nothing is left (then it is done)."""
    targets = bulk_targets(bulk.action, bulk.query)
    if bulk.cursor is not None:
        targets = targets.filter(pk__gt=bulk.cursor)
    if bulk.upto is not None:
        targets = targets.filter(pk__lt=bulk.upto)
    jobs = list(targets.order_by("pk")[:chunk])
    if bulk.action == "retry":
        done = len(services.jobs_retry_many(jobs=jobs, by="staff"))
    else:
        done = len(services.jobs_cancel_many(jobs=jobs, by="staff"))
    now = timezone.now()
    fields: dict[str, Any] = {"heartbeat_at": now}
    if jobs:
        bulk.cursor = jobs[-1].pk
        bulk.done += done
        bulk.skipped += len(jobs) - done
        fields |= {"cursor": bulk.cursor, "done": bulk.done, "skipped": bulk.skipped}
    finished = len(jobs) < chunk
    if finished:
        bulk.status = BulkActionStatus.DONE
        fields |= {"status": BulkActionStatus.DONE, "finished_at": now}
    JobBulkAction.objects.filter(pk=bulk.pk).update(**fields)
    return not finished


def bulk_actions_run(*, budget_seconds: float = 50.0, chunk: int = CHUNK) -> int:
    """The maintenance step: run open bulk actions for at most ``budget_seconds`` (the next tick
    goes on from the cursor). Returns the jobs handled."""
    deadline = time.monotonic() + budget_seconds
    handled = 0
    while time.monotonic() < deadline:
        bulk = _claim(timezone.now())
        if bulk is None:
            break
        try:
            while time.monotonic() < deadline:
                before = bulk.done + bulk.skipped
                more = bulk_action_step(bulk, chunk=chunk)
                handled += bulk.done + bulk.skipped - before
                if not more:
                    break
            else:
                # Out of time: let the next tick take it over at once.
                JobBulkAction.objects.filter(pk=bulk.pk).update(
                    status=BulkActionStatus.PENDING, heartbeat_at=None
                )
        except Exception as exc:
            logger.exception("bulk action %s failed", bulk.pk)
            JobBulkAction.objects.filter(pk=bulk.pk).update(
                status=BulkActionStatus.FAILED,
                error=f"{type(exc).__name__}: {exc}"[:500],
                finished_at=timezone.now(),
            )
    return handled
