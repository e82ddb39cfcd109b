"""Queue names, and what waits in a queue: each defined here, once.

A queue is a pool of worker processes (``celery worker -Q <name>`` in the Procfile) and the name
its wake-ups travel under (apps/jobs/dispatch.py). Conveyor's own names:

- ``DEFAULT_QUEUE``: the queue of a job type that names none (apps/jobs/registry.py);
- ``WEBHOOKS_QUEUE``: the webhook pool; its wake-ups start ``conveyor.deliver_webhooks``
  instead of ``conveyor.run_jobs``;
- ``MAINTENANCE_QUEUE``: the scheduler process's maintenance steps (``CELERY_BEAT_SCHEDULE``).

Any other queue is one that some job type names. A job *waits* in its queue when a worker of
that queue would claim it now: ``queued`` and not held for an inactive client
(apps/jobs/holds.py), the rows of the claim's partial index ``job_claimable_by_client``.
The scrape-time gauges and ``queue_stats`` count it through ``waiting_jobs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min
from django.db.models.functions import Coalesce

# No model or registry import at the top: config/settings.py takes the names from here, before
# any app is loaded.

DEFAULT_QUEUE = "default"
WEBHOOKS_QUEUE = "webhooks"
MAINTENANCE_QUEUE = "maintenance"

# The tasks that wake-ups start (workers/tasks.py): run_jobs, except on the queues listed here.
RUN_JOBS_TASK = "conveyor.run_jobs"
DELIVER_WEBHOOKS_TASK = "conveyor.deliver_webhooks"
TASK_FOR_QUEUE = {WEBHOOKS_QUEUE: DELIVER_WEBHOOKS_TASK}


@dataclass(frozen=True, slots=True)
class Waiting:
    count: int
    # When the oldest waiting job was queued (its creation, for a row written without it).
    oldest: datetime


def waiting_jobs(*, using: str | None = None) -> dict[str, Waiting]:
    """Per queue with any, the jobs waiting in it and the oldest one's queueing time.

    One grouped query over the partial index of claimable jobs, however large the table.
    """
    from apps.jobs.models import Job, JobStatus

    rows = (
        Job.objects.db_manager(using)
        .filter(status=JobStatus.QUEUED, held=False, pending_dependencies=0)
        .values("queue")
        .annotate(n=Count("pk"), oldest=Min(Coalesce("enqueued_at", "created_at")))
        .order_by()
    )
    return {row["queue"]: Waiting(row["n"], row["oldest"]) for row in rows}


def reported_queues(waiting: dict[str, Waiting] | None = None) -> list[str]:
    """The queues that reports list: every job type's and any with jobs waiting, in name
    order, then the maintenance queue."""
    from apps.jobs.registry import queues as job_type_queues

    names = (set(job_type_queues()) | set(waiting or ())) - {MAINTENANCE_QUEUE}
    return [*sorted(names), MAINTENANCE_QUEUE]


def full_rate_windows(limits: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Of these rate-limited job types (name → (starts, period seconds)), those whose current
    window has had all its starts, with the seconds until it ends: their queued jobs wait on
    the rate limit until then. One query on the (small) window table."""
    from django.utils import timezone

    from apps.jobs.models import RateWindow

    if not limits:
        return {}
    now = timezone.now()
    full = {}
    for window in RateWindow.objects.filter(job_type__in=limits, window_start__isnull=False):
        starts, period = limits[window.job_type]
        left = period - (now - window.window_start).total_seconds() if window.window_start else 0
        if window.starts >= starts and left > 0:
            full[window.job_type] = left
    return full
