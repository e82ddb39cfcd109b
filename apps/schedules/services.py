"""Writes to schedules: create, change, delete, run now. Firing due ones is firing.py's.

A schedule's ``job`` is checked exactly as POST /api/v1/jobs checks a submission
(``apps.jobs.submission.parse_submission``), less ``run_at`` and ``delay_seconds`` (the
schedule says when), and checked again each time it fires: a job type removed or a cap lowered
since makes the tick a recorded skip, never a bad job. Services know nothing of HTTP.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone as django_timezone

from apps.clients.models import ApiClient
from apps.core.errors import ConveyorError, InvalidState, NotFound, ValidationFailed
from apps.jobs import services as job_services
from apps.jobs.models import ACTIVE_STATUSES, Job
from apps.jobs.submission import parse_submission
from apps.schedules.cron import (
    DEFAULT_TIMEZONE,
    cron_problem,
    next_tick,
    timezone_problem,
)
from apps.schedules.models import NAME_MAX_LENGTH, Overlap, Schedule

FIELDS = frozenset({"name", "cron", "timezone", "job", "enabled", "overlap"})
# What decides the next tick: changing one of them recomputes next_run_at.
TIMING_FIELDS = frozenset({"cron", "timezone", "enabled"})
NOT_IN_JOB = ("run_at", "delay_seconds")
# A schedule's runs are independent jobs: dependencies name jobs that exist once, a schedule
# fires again and again (docs/architecture.md, "Dependencies").
NOT_IN_SCHEDULED_JOB = ("depends_on", "ref")


class AlreadyExists(ConveyorError):
    status = 409
    code = "already_exists"
    default_message = "A schedule with this name exists."


class LimitReached(ConveyorError):
    status = 409
    code = "limit_reached"
    default_message = "This client has as many schedules as it may have."


def _name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX_LENGTH:
        return f"Must be a string of 1 to {NAME_MAX_LENGTH} characters."
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "Must not contain control characters."
    return None


def check_job(job: Any, *, now: datetime) -> None:
    """ValidationFailed (details keyed ``job.<field>``) unless ``job`` is a submission body that
    POST /api/v1/jobs would take, without run_at or delay_seconds."""
    if not isinstance(job, dict):
        raise ValidationFailed(
            "The schedule is not valid.", details={"job": ["Must be a job submission object."]}
        )
    errors = {
        f"job.{name}": ["A schedule's job has no run_at or delay_seconds: the schedule says when."]
        for name in NOT_IN_JOB
        if name in job
    }
    errors.update(
        {
            f"job.{name}": ["A schedule's job has no dependencies: each run stands alone."]
            for name in NOT_IN_SCHEDULED_JOB
            if name in job
        }
    )
    try:
        parse_submission(job, now=now)
    except ValidationFailed as exc:
        errors.update({f"job.{field}": messages for field, messages in exc.details.items()})
    if errors:
        raise ValidationFailed("The schedule is not valid.", details=errors)


def parse_schedule(data: Any, *, partial: bool, now: datetime) -> dict[str, Any]:
    """The validated fields of a schedule body (all required ones unless ``partial``), or
    ValidationFailed listing every problem. Null is refused like any other wrong type."""
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The body must be a JSON object.", details={"body": ["Expected an object."]}
        )
    errors: dict[str, list[str]] = {}
    for unknown in sorted(set(data) - FIELDS):
        errors[unknown] = ["Unknown field."]
    if not partial:
        for required in ("name", "cron", "job"):
            if required not in data:
                errors[required] = ["This field is required."]
    checks = {
        "name": _name_problem,
        "cron": cron_problem,
        "timezone": timezone_problem,
        "enabled": lambda v: None if isinstance(v, bool) else "Must be true or false.",
        "overlap": lambda v: None if v in Overlap.values else "Must be skip or allow.",
    }
    for name, check in checks.items():
        if name in data and (problem := check(data[name])):
            errors[name] = [problem]
    if "job" in data:
        try:
            check_job(data["job"], now=now)
        except ValidationFailed as exc:
            errors.update(exc.details)
    if errors:
        raise ValidationFailed("The schedule is not valid.", details=errors)
    fields = {name: data[name] for name in FIELDS if name in data}
    if not partial:
        fields.setdefault("timezone", DEFAULT_TIMEZONE)
    return fields


def _retime(schedule: Schedule, *, now: datetime) -> None:
    """Set next_run_at from the schedule's cron, time zone and state: the first tick after
    ``now``, or None while disabled."""
    if not schedule.enabled:
        schedule.next_run_at = None
        return
    tick = next_tick(schedule.cron, schedule.timezone, after=now)
    if tick is None:
        raise ValidationFailed(
            "The schedule is not valid.",
            details={"cron": ["Does not fire within the next 50 years."]},
        )
    schedule.next_run_at = tick


def _check_limit(client: ApiClient) -> None:
    if client.unlimited:
        return
    limit = settings.SCHEDULES_MAX_PER_CLIENT
    count = Schedule.objects.filter(client_id=client.pk).order_by().values("pk")[:limit].count()
    if count >= limit:
        raise LimitReached(
            f"This client has {count} schedules, the most it may have.",
            details={"schedules": count, "max_schedules": limit},
        )


def _save(schedule: Schedule, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            schedule.save(**kwargs)
    except IntegrityError as exc:
        if "schedule_client_name" not in str(exc):
            raise
        raise AlreadyExists(
            f"You already have a schedule named {schedule.name!r}.",
            details={"name": ["Already used by another of your schedules."]},
        ) from None


def schedule_create(*, client: ApiClient, data: Any, now: datetime | None = None) -> Schedule:
    """Validate and store a new schedule with its first tick. Raises ValidationFailed,
    AlreadyExists (the name is taken) or LimitReached (``SCHEDULES_MAX_PER_CLIENT``)."""
    now = now or django_timezone.now()
    fields = parse_schedule(data, partial=False, now=now)
    _check_limit(client)
    schedule = Schedule(client_id=client.pk, created_at=now, updated_at=now, **fields)
    _retime(schedule, now=now)
    _save(schedule, force_insert=True)
    return schedule


def schedule_update(*, schedule: Schedule, data: Any, now: datetime | None = None) -> Schedule:
    """Change the given fields. A change of cron, time zone or enabled moves the next tick to
    the first one after now (enabling never fires the ticks missed while disabled); other
    changes keep it. ``job`` is replaced whole. The row is locked meanwhile, so a change never
    interleaves with a firing of the same schedule."""
    now = now or django_timezone.now()
    fields = parse_schedule(data, partial=True, now=now)
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().filter(pk=schedule.pk).first()
        if locked is None:
            raise NotFound()
        retime = any(
            name in TIMING_FIELDS and getattr(locked, name) != value
            for name, value in fields.items()
        )
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.updated_at = now
        if retime:
            _retime(locked, now=now)
        _save(locked)
    return locked


def schedule_store(schedule: Schedule, *, changed: list[str], now: datetime | None = None) -> None:
    """Save a schedule built or edited outside the API (the admin's form, whose ``clean`` ran
    ``parse_schedule``). A new one gets its first tick; an existing one writes only the
    ``changed`` fields, under the row's lock (a tick fired meanwhile is kept, never written
    back), and moves to the first tick after now when cron, time zone or enabled changed."""
    now = now or django_timezone.now()
    schedule.updated_at = now
    if schedule._state.adding:
        schedule.created_at = now
        _retime(schedule, now=now)
        _save(schedule, force_insert=True)
        return
    fields = [name for name in changed if name in FIELDS or name == "client"]
    with transaction.atomic():
        Schedule.objects.select_for_update().filter(pk=schedule.pk).first()
        if TIMING_FIELDS & set(fields):
            _retime(schedule, now=now)
            fields.append("next_run_at")
        _save(schedule, update_fields=[*fields, "updated_at"])


def schedule_set_enabled(*, schedule: Schedule, enabled: bool) -> Schedule:
    """Enable or disable (the admin's actions); the same as a PATCH of ``enabled``."""
    return schedule_update(schedule=schedule, data={"enabled": enabled})


def schedule_delete(*, schedule: Schedule) -> None:
    """Remove the schedule. Its jobs stay, with their schedule_id."""
    Schedule.objects.filter(pk=schedule.pk).delete()


def previous_run_active(schedule: Schedule) -> bool:
    """Whether the schedule's last job is still active (queued, scheduled, running, retrying).
    A purged job is finished by definition."""
    if schedule.last_job_id is None:
        return False
    return (
        Job.objects.using("default")
        .filter(pk=schedule.last_job_id, status__in=ACTIVE_STATUSES)
        .exists()
    )


def submit_run(schedule: Schedule, *, client: ApiClient, now: datetime) -> Job:
    """Submit one run of the schedule's job through the jobs services (validation, quota and
    fair dispatch as for any submission), marked with the schedule's id, and record it on the
    (locked) schedule row. Call inside the transaction that locked the row."""
    if any(name in schedule.job for name in NOT_IN_JOB):
        raise ValidationFailed(
            "The schedule's job has run_at or delay_seconds.",
            details={"job": ["run_at and delay_seconds are not allowed."]},
        )
    job = job_services.job_submit(
        client=client,
        data=schedule.job,
        request_id=f"schedule-{uuid.uuid4().hex}",
        schedule_id=schedule.pk,
    )
    schedule.last_run_at = now
    schedule.last_job_id = job.pk
    return job


def schedule_trigger(*, schedule: Schedule, client: ApiClient, now: datetime | None = None) -> Job:
    """Run the schedule now, whether enabled or not; its next tick stays. With overlap=skip, a
    previous run still active makes it InvalidState (409); QuotaExceeded and ValidationFailed
    come from the job's submission as they would from POST /jobs."""
    now = now or django_timezone.now()
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().filter(pk=schedule.pk).first()
        if locked is None:
            raise NotFound()
        if locked.overlap == Overlap.SKIP and previous_run_active(locked):
            raise InvalidState(
                "The schedule's previous run is still active and its overlap is skip.",
                details={"last_job_id": str(locked.last_job_id)},
            )
        job = submit_run(locked, client=client, now=now)
        locked.save(update_fields=["last_run_at", "last_job_id"])
    return job
