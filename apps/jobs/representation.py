"""The public Job object of API.md, as a plain dict (no serializer on the hot read path).

The same dict is the API response body, the status cache entry and a webhook's ``data``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apps.jobs.models import PRIORITY_NAMES, Job, JobStatus

# Why a job has not started (API.md, "Sharing the pools fairly"). The representation says what
# the row alone says; ``refine_wait_reasons`` (apps/jobs/selectors.py) corrects a queued job's
# "capacity" on read when its client's cap or its concurrency key is what holds it.
WAIT_SCHEDULED = "scheduled"
WAIT_CAPACITY = "capacity"
WAIT_CLIENT_LIMIT = "client_limit"
WAIT_CONCURRENCY_LIMIT = "concurrency_limit"
WAIT_RATE_LIMIT = "rate_limit"
WAIT_DEPENDENCIES = "dependencies"
WAIT_REASONS = (
    WAIT_SCHEDULED,
    WAIT_DEPENDENCIES,
    WAIT_CONCURRENCY_LIMIT,
    WAIT_CLIENT_LIMIT,
    WAIT_RATE_LIMIT,
    WAIT_CAPACITY,
)


def wait_reason(job: Job) -> str | None:
    """``scheduled`` for a job waiting for its run_at (a retry's backoff included);
    ``client_limit`` for a job held while its client is inactive; ``dependencies`` for a queued
    job some of whose dependencies have not succeeded yet; ``capacity`` for any other queued
    job; None once it has started."""
    if job.status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
        return WAIT_SCHEDULED
    if job.status == JobStatus.QUEUED:
        if job.held:
            return WAIT_CLIENT_LIMIT
        return WAIT_DEPENDENCIES if job.pending_dependencies else WAIT_CAPACITY
    return None


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def job_location(job: Job) -> str:
    return f"/api/v1/jobs/{job.pk}"


def job_etag(job: Job) -> str:
    return f'"{job.version}"'


def job_to_dict(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.pk),
        "type": job.type,
        "status": job.status,
        "input": job.input,
        "result": job.result,
        "error": job.error,
        "progress": job.progress,
        "priority": PRIORITY_NAMES[job.priority],
        "queue": job.queue,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "retry_backoff_seconds": job.retry_backoff_seconds,
        "timeout_seconds": job.timeout_seconds,
        "idempotency_key": job.idempotency_key,
        "webhook_url": job.webhook_url,
        "webhook_events": job.webhook_events,
        "metadata": job.metadata,
        "created_at": rfc3339(job.created_at),
        "run_at": rfc3339(job.run_at),
        "started_at": rfc3339(job.started_at),
        "finished_at": rfc3339(job.finished_at),
        "cancel_requested": job.cancel_requested,
        "concurrency_key": job.concurrency_key,
        "concurrency_limit": job.concurrency_limit,
        "unique_key": job.unique_key,
        "unique_for_seconds": job.unique_for_seconds,
        "wait_reason": wait_reason(job),
        "schedule_id": str(job.schedule_id) if job.schedule_id is not None else None,
        "depends_on": [str(dep) for dep in job.depends_on],
    }
