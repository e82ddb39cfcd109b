"""The public Schedule object (API.md, "Schedules"), as a plain dict."""

from __future__ import annotations

from typing import Any

from apps.jobs.representation import rfc3339
from apps.schedules.models import Schedule


def schedule_location(schedule: Schedule) -> str:
    return f"/api/v1/schedules/{schedule.pk}"


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": str(schedule.pk),
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "job": schedule.job,
        "enabled": schedule.enabled,
        "overlap": schedule.overlap,
        "next_run_at": rfc3339(schedule.next_run_at),
        "last_run_at": rfc3339(schedule.last_run_at),
        "last_job_id": str(schedule.last_job_id) if schedule.last_job_id else None,
        "last_skipped_at": rfc3339(schedule.last_skipped_at),
        "last_skip_reason": schedule.last_skip_reason or None,
        "created_at": rfc3339(schedule.created_at),
    }
