"""Reads of jobs. Every read is scoped to the asking client: another client's job is not found."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone

from apps.core.errors import NotFound
from apps.core.replicas import primary_reads, reading_from_replica
from apps.jobs.models import Job, JobStatus, RunningCount
from apps.jobs.queues import full_rate_windows, reported_queues, waiting_jobs
from apps.jobs.registry import rate_limits
from apps.jobs.representation import (
    WAIT_CAPACITY,
    WAIT_CLIENT_LIMIT,
    WAIT_CONCURRENCY_LIMIT,
    WAIT_RATE_LIMIT,
)


def refine_wait_reasons(bodies: list[dict[str, Any]], *, client: Any) -> list[dict[str, Any]]:
    """The client's job representations with each queued job's ``wait_reason`` told on read:
    ``concurrency_limit`` when its key has its limit of jobs running, ``client_limit`` when
    the client has its cap running, else what the row says. At most one small query (the
    client's RunningCount rows of those keys), none when no queued job could be limited."""
    queued = [b for b in bodies if b.get("wait_reason") == WAIT_CAPACITY]
    rates = rate_limits()
    limited = {b["type"] for b in queued if b["type"] in rates}
    if limited:
        full = full_rate_windows({name: rates[name] for name in limited})
        for body in queued:
            if body["type"] in full:
                body["wait_reason"] = WAIT_RATE_LIMIT
        queued = [b for b in queued if b["wait_reason"] == WAIT_CAPACITY]
    keys = {b["concurrency_key"] for b in queued if b.get("concurrency_key")}
    capped = client.max_running_jobs is not None
    if not queued or not (keys or capped):
        return bodies
    running = dict(
        RunningCount.objects.filter(client_id=client.pk, key__in=[*keys, ""]).values_list(
            "key", "running"
        )
    )
    for body in queued:
        key = body.get("concurrency_key")
        if key and running.get(key, 0) >= (body.get("concurrency_limit") or 1):
            body["wait_reason"] = WAIT_CONCURRENCY_LIMIT
        elif capped and running.get("", 0) >= client.max_running_jobs:
            body["wait_reason"] = WAIT_CLIENT_LIMIT
    return bodies


def parse_job_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


def job_get_for_client(*, client_id: int, job_id: str) -> Job:
    """The client's job, or NotFound (also for a malformed id or another client's job)."""
    pk = parse_job_id(job_id)
    if pk is None:
        raise NotFound("No job with this id.")
    job = Job.objects.filter(pk=pk, client_id=client_id).first()
    if job is None and reading_from_replica():
        # A replica that has not replayed the job's INSERT yet does not know it: only the
        # primary may say that a job does not exist.
        with primary_reads():
            job = Job.objects.filter(pk=pk, client_id=client_id).first()
    if job is None:
        raise NotFound("No job with this id.")
    return job


@dataclass(frozen=True)
class JobListFilters:
    statuses: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None
    # The schedule that fired the jobs (apps/schedules); another client's gives nothing.
    schedule_id: uuid.UUID | None = None


def uuid7_floor(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of ``moment``'s millisecond: a bound on ids created at or after it."""
    ms = int(moment.timestamp() * 1000)
    return uuid.UUID(int=(max(ms, 0) << 80) | (0x7 << 76) | (0b10 << 62))


def jobs_filtered(*, client_id: int, filters: JobListFilters) -> QuerySet[Job]:
    qs = Job.objects.filter(client_id=client_id)
    if filters.statuses:
        qs = qs.filter(status__in=filters.statuses)
    if filters.types:
        qs = qs.filter(type__in=filters.types)
    if filters.queues:
        qs = qs.filter(queue__in=filters.queues)
    if filters.metadata:
        # jsonb containment: served by the GIN index on metadata.
        qs = qs.filter(metadata__contains=filters.metadata)
    # Ids are UUIDv7, ordered by creation time: an id bound lets the (client, id) index do the
    # range scan, and the created_at condition keeps the exact semantics.
    if filters.created_after is not None:
        qs = qs.filter(
            pk__gte=uuid7_floor(filters.created_after), created_at__gt=filters.created_after
        )
    if filters.created_before is not None:
        qs = qs.filter(created_at__lt=filters.created_before)
    if filters.schedule_id is not None:
        qs = qs.filter(schedule_id=filters.schedule_id)
    return qs


def jobs_page_for_client(
    *, client_id: int, filters: JobListFilters, after: uuid.UUID | None, limit: int
) -> tuple[list[Job], uuid.UUID | None]:
    """One page of the client's jobs, newest first, and the cursor of the next page (or None).

    Keyset pagination on the unique id: a page never repeats or skips a job, whatever is
    inserted meanwhile (new jobs appear at the top, before the first page).
    """
    qs = jobs_filtered(client_id=client_id, filters=filters)
    if after is not None:
        qs = qs.filter(pk__lt=after)
    rows = list(qs.order_by("-pk")[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].pk
    return rows, None


def queue_statistics() -> dict[str, Any]:
    """Per queue: broker depth, waiting jobs and the oldest one's wait; jobs per status."""
    from apps.jobs.broker import queue_depths

    now = timezone.now()
    statuses = dict.fromkeys(JobStatus.values, 0)
    for row in Job.objects.values("status").annotate(n=Count("pk")).order_by():
        statuses[row["status"]] = row["n"]
    waiting = waiting_jobs()
    names = reported_queues(waiting)
    depths = queue_depths(names)
    result = {}
    for name in names:
        queued = waiting.get(name)
        result[name] = {
            "depth": depths.get(name),
            "queued": queued.count if queued else 0,
            "oldest_queued_age_seconds": round((now - queued.oldest).total_seconds(), 3)
            if queued
            else None,
        }
    return {"queues": result, "statuses": statuses, "clients": busiest_clients()}


def busiest_clients(limit: int = 10) -> list[dict[str, Any]]:
    """The clients with the most jobs running or waiting, per queue: running (index
    job_running) and waiting (index job_claimable_by_client: claimable jobs, not those held or
    waiting for dependencies) counts, busiest first."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for status, field_name in ((JobStatus.RUNNING, "running"), (JobStatus.QUEUED, "waiting")):
        query = Job.objects.filter(status=status)
        if status == JobStatus.QUEUED:
            # job_claimable_by_client's condition, whole: without pending_dependencies=0 the
            # planner cannot use the partial index (a scan of the table: 1.9 s on 10 M jobs).
            query = query.filter(held=False, pending_dependencies=0)
        for row in (
            query.values("queue", "client_id", "client__name").annotate(n=Count("pk")).order_by()
        ):
            entry = rows.setdefault(
                (row["queue"], row["client_id"]),
                {"queue": row["queue"], "client": row["client__name"], "running": 0, "waiting": 0},
            )
            entry[field_name] = row["n"]
    ranked = sorted(rows.values(), key=lambda e: (-(e["running"] + e["waiting"]), e["client"]))
    return ranked[:limit]


def job_dependents(*, job_id: Any, limit: int) -> list[Any]:
    """The ids of up to ``limit`` jobs that depend on ``job_id`` (job_depends_on's GIN index:
    its condition, repeated here, lets PostgreSQL use it)."""
    return list(
        Job.objects.filter(depends_on__len__gt=0, depends_on__contains=[job_id])
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
