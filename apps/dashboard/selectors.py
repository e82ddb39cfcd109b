"""What the admin dashboard shows, read in a bounded number of queries whatever the table size.

- waiting jobs per queue and the oldest one's wait: one grouped query over the claim's partial
  index (``apps.jobs.queues.waiting_jobs``);
- running jobs per queue and those past their timeout: one grouped query over ``job_running``
  (as many rows as jobs run now);
- throughput and failure rates: two grouped queries over ``FinishedCount`` (the per-minute
  rollup of apps/jobs/throughput.py: a row per minute, queue, type and outcome);
- the busiest clients: two grouped queries over the same partial indexes
  (``apps.jobs.selectors.busiest_clients``);
- failing webhook deliveries: two capped counts; live workers: Redis (apps/jobs/fleet.py).

No query here reads the finished jobs themselves: with ten million rows a page still reads a few
thousand (docs/benchmarks.md, phase ``dashboard``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Now
from django.urls import reverse
from django.utils import timezone

from apps.jobs.fleet import live_workers
from apps.jobs.models import FinishedCount, FinishedCountMark, Job, JobStatus
from apps.jobs.queues import reported_queues, waiting_jobs
from apps.jobs.selectors import busiest_clients
from apps.webhooks.selectors import FAILING_COUNT_CAP, deliveries_failing

HOUR_MINUTES = 60
# The 24-hour chart: one bar per this many minutes (96 bars).
DAY_BUCKET_MINUTES = 15
DAY_BUCKETS = 24 * 60 // DAY_BUCKET_MINUTES


@dataclass
class Series:
    """Succeeded and failed jobs per bucket, oldest first, and the bucket's start times."""

    starts: list[datetime]
    succeeded: list[int]
    failed: list[int]

    @property
    def total_succeeded(self) -> int:
        return sum(self.succeeded)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)


@dataclass
class QueueRow:
    name: str
    waiting: int = 0
    oldest_wait_seconds: float | None = None
    running: int = 0
    overdue: int = 0
    workers: int | None = None
    processes: int | None = None
    hour: Series | None = None
    day: Series | None = None

    def per_minute(self, series: Series | None, minutes: int) -> float:
        if series is None:
            return 0.0
        return round((series.total_succeeded + series.total_failed) / minutes, 2)


@dataclass
class Attention:
    kind: str  # stuck_queue, slow_queue, overdue_jobs, deliveries_retrying, deliveries_failed
    text: str
    url: str
    count: int


@dataclass
class Dashboard:
    now: datetime
    queues: list[QueueRow]
    job_types: list[dict[str, Any]]
    clients: list[dict[str, Any]]
    attention: list[Attention]
    deliveries: dict[str, int]
    counted_to: datetime | None
    any_jobs: bool
    workers_known: bool
    any_workers: bool
    extra: dict[str, Any] = field(default_factory=dict)


def _changelist(model: str, **params: str) -> str:
    return f"{reverse(f'admin:{model}_changelist')}?{urlencode(params)}"


def _series(rows: dict[datetime, dict[str, int]], starts: list[datetime]) -> Series:
    return Series(
        starts=starts,
        succeeded=[rows.get(start, {}).get(JobStatus.SUCCEEDED, 0) for start in starts],
        failed=[rows.get(start, {}).get(JobStatus.FAILED, 0) for start in starts],
    )


def _throughput(
    now: datetime,
) -> tuple[dict[str, Series], dict[str, Series], list[dict[str, Any]]]:
    """Per queue, the last hour per minute and the last 24 hours per 15 minutes; per job type,
    the 24 hours' outcomes. Two grouped queries on the rollup (the day read once)."""
    this_minute = now.replace(second=0, microsecond=0)
    hour_starts = [this_minute - timedelta(minutes=n) for n in range(HOUR_MINUTES - 1, -1, -1)]
    day_end = this_minute - timedelta(minutes=this_minute.minute % DAY_BUCKET_MINUTES)
    day_starts = [
        day_end - timedelta(minutes=DAY_BUCKET_MINUTES * n) for n in range(DAY_BUCKETS - 1, -1, -1)
    ]
    recent = FinishedCount.objects.filter(minute__gte=hour_starts[0]).order_by()
    per_minute: dict[str, dict[datetime, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for row in recent.values("queue", "minute", "outcome").annotate(n=Sum("count")):
        per_minute[row["queue"]][row["minute"]][row["outcome"]] = row["n"]
    per_bucket: dict[str, dict[datetime, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    per_type: dict[str, dict[str, int]] = defaultdict(dict)
    for queue, job_type, bucket, outcome, n in _day(day_starts[0]):
        if queue is not None:
            per_bucket[queue][day_starts[bucket]][outcome] = n
        elif job_type is not None:
            per_type[job_type][outcome] = n
    types: list[dict[str, Any]] = []
    for name, outcomes in per_type.items():
        succeeded = outcomes.get(JobStatus.SUCCEEDED, 0)
        failed = outcomes.get(JobStatus.FAILED, 0)
        ended = succeeded + failed
        types.append(
            {
                "type": name,
                "succeeded": succeeded,
                "failed": failed,
                "canceled": outcomes.get(JobStatus.CANCELED, 0),
                "failure_rate": round(failed / ended, 4) if ended else None,
                "url": _changelist("jobs_job", status__exact="failed", type=name),
            }
        )
    types.sort(key=lambda t: (-(t["failure_rate"] or 0), -t["failed"], t["type"]))
    hours = {q: _series(rows, hour_starts) for q, rows in per_minute.items()}
    days = {q: _series(rows, day_starts) for q, rows in per_bucket.items()}
    return hours, days, types


# The day's figures are shared by every viewer for this long: a 15-minute bar needs no fresher
# figure, and the day's scan is the page's dearest query (docs/benchmarks.md, "The dashboard").
DAY_CACHE_SECONDS = 60


def _day(origin: datetime) -> list[tuple[str | None, str | None, int, str, int]]:
    """The day's rows read once, grouped two ways (``GROUPING SETS``): (queue, None, bucket,
    outcome, jobs) per 15-minute bucket from ``origin`` (PostgreSQL's ``date_bin``; the bucket
    as its number), and (None, type, 0, outcome, jobs) per job type. Cached for
    ``DAY_CACHE_SECONDS`` under the day's first bucket, so a new bucket is read at once."""
    key = f"dashboard:day:{origin.isoformat()}"
    cached = cache.get(key)
    if cached is not None:
        return [(q, t, b, o, n) for q, t, b, o, n in cached]
    table = connections["default"].ops.quote_name(FinishedCount._meta.db_table)
    sql = " ".join(
        [
            'SELECT "queue", "type", date_bin(%s::interval, "minute", %s) AS b, "outcome",',
            f'sum("count") FROM {table} WHERE "minute" >= %s',
            'GROUP BY GROUPING SETS (("queue", b, "outcome"), ("type", "outcome"))',
        ]
    )
    step = timedelta(minutes=DAY_BUCKET_MINUTES)
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, [f"{DAY_BUCKET_MINUTES} minutes", origin, origin])
        rows = [
            (q, t, int((b - origin) / step) if b is not None else 0, o, int(n))
            for q, t, b, o, n in cursor.fetchall()
        ]
    cache.set(key, rows, DAY_CACHE_SECONDS)
    return rows


def _running(now: datetime) -> dict[str, tuple[int, int]]:
    """queue → (running jobs, those running longer than their timeout)."""
    past_timeout = Q(started_at__lt=Now() - F("timeout_seconds") * timedelta(seconds=1))
    rows = (
        Job.objects.filter(status=JobStatus.RUNNING)
        .values("queue")
        .annotate(n=Count("pk"), overdue=Count("pk", filter=past_timeout))
        .order_by()
    )
    return {row["queue"]: (row["n"], row["overdue"]) for row in rows}


def duration(seconds: float) -> str:
    """A wait as people say it: 45 s, 12 min, 3 h 5 min."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _attention(
    queues: list[QueueRow], deliveries: dict[str, int], workers_known: bool
) -> list[Attention]:
    stuck_after = settings.DASHBOARD_STUCK_AFTER_SECONDS
    items = []
    for q in queues:
        waiting_url = _changelist("jobs_job", status__exact="queued", queue=q.name)
        if q.waiting and workers_known and not q.workers:
            items.append(
                Attention(
                    "stuck_queue",
                    f"Queue {q.name}: {q.waiting} job(s) waiting and no live worker.",
                    waiting_url,
                    q.waiting,
                )
            )
        elif q.waiting and not q.running and (q.oldest_wait_seconds or 0) >= stuck_after:
            items.append(
                Attention(
                    "stuck_queue",
                    f"Queue {q.name}: nothing started for {duration(q.oldest_wait_seconds or 0)}"
                    f" while {q.waiting} job(s) wait.",
                    waiting_url,
                    q.waiting,
                )
            )
        elif q.waiting and (q.oldest_wait_seconds or 0) >= stuck_after:
            items.append(
                Attention(
                    "slow_queue",
                    f"Queue {q.name}: the oldest of {q.waiting} waiting job(s) has waited "
                    f"{duration(q.oldest_wait_seconds or 0)}.",
                    waiting_url,
                    q.waiting,
                )
            )
        if q.overdue:
            items.append(
                Attention(
                    "overdue_jobs",
                    f"Queue {q.name}: {q.overdue} job(s) running past their timeout.",
                    _changelist("jobs_job", status__exact="running", queue=q.name),
                    q.overdue,
                )
            )
    for key, status, says in (
        ("retrying", "pending", "are being retried after failed attempts"),
        ("failed", "failed", "failed for good in the last 24 hours"),
    ):
        count = deliveries[key]
        if count:
            shown = f"{FAILING_COUNT_CAP}+" if count >= FAILING_COUNT_CAP else str(count)
            items.append(
                Attention(
                    f"deliveries_{key}",
                    f"{shown} webhook deliveries {says}.",
                    _changelist("webhooks_webhookdelivery", status__exact=status),
                    count,
                )
            )
    return items


def dashboard(*, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    waiting = waiting_jobs()
    running = _running(now)
    hours, days, types = _throughput(now)
    fleet = live_workers()
    names = reported_queues(waiting)
    names += sorted((set(running) | set(hours) | set(days)) - set(names))
    queues = []
    for name in names:
        row = QueueRow(name=name, hour=hours.get(name), day=days.get(name))
        if name in waiting:
            row.waiting = waiting[name].count
            row.oldest_wait_seconds = max(0.0, (now - waiting[name].oldest).total_seconds())
        row.running, row.overdue = running.get(name, (0, 0))
        if fleet is not None:
            row.workers, row.processes = fleet.get(name, (0, 0))
        queues.append(row)
    deliveries = deliveries_failing(since=now - timedelta(hours=24))
    clients = busiest_clients()
    for entry in clients:
        entry["url"] = _changelist("jobs_job", q=entry["client"])
    mark = FinishedCountMark.objects.order_by("pk").values_list("counted_to", flat=True).first()
    return Dashboard(
        now=now,
        queues=queues,
        job_types=types,
        clients=clients,
        attention=_attention(queues, deliveries, fleet is not None),
        deliveries=deliveries,
        counted_to=mark,
        any_jobs=bool(waiting or running or hours or days or types)
        or Job.objects.only("pk").exists(),
        workers_known=fleet is not None,
        any_workers=bool(fleet),
    )
