"""Validation of a job submission (the body of POST /jobs, or one item of a batch).

Hand-written rather than a DRF serializer: it runs once per job on the hottest write path (a
1000-job batch validates 1000 of these), and it collects every problem at once, keyed by field
path, in the ``details`` shape of API.md. The OpenAPI document describes the same fields with
``apps.jobs.api.serializers.JobSubmitDoc``. An optional field is either left out or holds a value
of its type: null is refused like any other wrong type, as the document says (nothing is nullable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from apps.core.errors import PayloadTooLarge, ValidationFailed
from apps.core.urlguard import webhook_url_problem
from apps.jobs.models import PRIORITY_VALUES
from apps.jobs.registry import JobType, get_job_type
from apps.jobs.webhook_events import DEFAULT_WEBHOOK_EVENTS, WEBHOOK_EVENTS

SUBMISSION_FIELDS = frozenset(
    {
        "type",
        "input",
        "priority",
        "run_at",
        "delay_seconds",
        "max_attempts",
        "timeout_seconds",
        "retry_backoff_seconds",
        "webhook_url",
        "webhook_events",
        "metadata",
        "concurrency_key",
        "concurrency_limit",
        "unique_key",
        "unique_for_seconds",
        "depends_on",
        "ref",
    }
)
CONCURRENCY_KEY = re.compile(r"[\x20-\x7e]{1,200}")
CONCURRENCY_LIMIT_MAX = 1000
UNIQUE_KEY = CONCURRENCY_KEY
UNIQUE_FOR_MAX_SECONDS = 30 * 24 * 3600
MAX_SCHEDULE_AHEAD = timedelta(days=365)
METADATA_MAX_KEYS = 20
METADATA_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
METADATA_VALUE_MAX = 500
DEPENDS_ON_MAX = 100
REF_MAX_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Submission:
    job_type: JobType
    input: dict[str, Any]
    priority: int
    run_at: datetime | None
    max_attempts: int
    timeout_seconds: int
    retry_backoff_seconds: float | None
    webhook_url: str | None
    webhook_events: list[str]
    metadata: dict[str, str]
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    unique_key: str | None = None
    unique_for_seconds: int | None = None
    # Workflows: what it waits for, as given (job ids, or refs of earlier jobs of its batch;
    # apps/jobs/dependencies.py resolves them), and its own name within its batch.
    depends_on: tuple[str, ...] = ()
    ref: str | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _bounded_int(
    data: dict[str, Any], name: str, low: int, high: int, errors: dict[str, list[str]]
) -> int | None:
    if name not in data:
        return None
    value = data[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 is an integer in JSON Schema, as in the OpenAPI document
    if not _is_int(value):
        errors[name] = ["Must be an integer."]
    elif not low <= value <= high:
        errors[name] = [f"Must be between {low} and {high}."]
    else:
        return int(value)
    return None


def parse_submission(data: Any, *, now: datetime) -> Submission:
    """A validated submission, or ValidationFailed listing every problem (PayloadTooLarge when
    the input alone is over its size limit)."""
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The body must be a JSON object.", details={"body": ["Expected an object."]}
        )
    errors: dict[str, list[str]] = {}
    for unknown in sorted(set(data) - SUBMISSION_FIELDS):
        errors[unknown] = ["Unknown field."]

    job_type = None
    type_name = data.get("type")
    if type_name is None:
        errors["type"] = ["This field is required."]
    elif not isinstance(type_name, str):
        errors["type"] = ["Must be a string."]
    else:
        job_type = get_job_type(type_name)
        if job_type is None:
            errors["type"] = [f"Unknown job type {type_name!r}; GET /api/v1/job-types lists them."]

    raw_priority = data.get("priority", "normal")
    priority = PRIORITY_VALUES.get(raw_priority) if isinstance(raw_priority, str) else None
    if priority is None:
        errors["priority"] = ["Must be one of low, normal, high."]

    run_at = None
    if "run_at" in data and "delay_seconds" in data:
        errors["run_at"] = ["Give run_at or delay_seconds, not both."]
    elif "run_at" in data:
        run_at = _parse_datetime(data["run_at"])
        if run_at is None:
            errors["run_at"] = ["Must be an RFC 3339 date-time with a timezone."]
        elif run_at - now > MAX_SCHEDULE_AHEAD:
            errors["run_at"] = ["Must be at most 365 days ahead."]
    elif "delay_seconds" in data:
        delay = data["delay_seconds"]
        if not _is_number(delay) or not 0 <= delay <= MAX_SCHEDULE_AHEAD.total_seconds():
            errors["delay_seconds"] = ["Must be a number of seconds from 0 to 31536000."]
        else:
            run_at = now + timedelta(seconds=delay)
    if run_at is not None and run_at <= now:
        run_at = None  # due already: queue at once

    webhook_url = data.get("webhook_url")
    if "webhook_url" in data:
        problem = webhook_url_problem(webhook_url)
        if problem:
            errors["webhook_url"] = [problem]
    webhook_events = list(DEFAULT_WEBHOOK_EVENTS)
    if "webhook_events" in data:
        events = data["webhook_events"]
        if not isinstance(events, list) or not all(
            isinstance(e, str) and e in WEBHOOK_EVENTS for e in events
        ):
            errors["webhook_events"] = [f"Must be a list drawn from {', '.join(WEBHOOK_EVENTS)}."]
        else:
            webhook_events = [e for e in WEBHOOK_EVENTS if e in set(events)]

    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        errors["metadata"] = ["Must be an object of string values."]
    else:
        if len(metadata) > METADATA_MAX_KEYS:
            errors["metadata"] = [f"At most {METADATA_MAX_KEYS} keys."]
        for key, value in metadata.items():
            if not METADATA_KEY.fullmatch(key):
                errors[f"metadata.{key}"] = ["Keys are 1-64 characters of A-Z a-z 0-9 _ . -"]
            elif not isinstance(value, str) or len(value) > METADATA_VALUE_MAX:
                errors[f"metadata.{key}"] = [f"Values are strings of at most {METADATA_VALUE_MAX}."]

    concurrency_key = data.get("concurrency_key")
    concurrency_limit = _bounded_int(data, "concurrency_limit", 1, CONCURRENCY_LIMIT_MAX, errors)
    if "concurrency_key" in data:
        if not isinstance(concurrency_key, str) or not CONCURRENCY_KEY.fullmatch(concurrency_key):
            errors["concurrency_key"] = ["Must be 1-200 printable ASCII characters."]
        elif concurrency_limit is None and "concurrency_limit" not in errors:
            concurrency_limit = 1

    unique_key = data.get("unique_key")
    unique_for_seconds = _bounded_int(data, "unique_for_seconds", 1, UNIQUE_FOR_MAX_SECONDS, errors)
    if "unique_key" in data and (
        not isinstance(unique_key, str) or not UNIQUE_KEY.fullmatch(unique_key)
    ):
        errors["unique_key"] = ["Must be 1-200 printable ASCII characters."]

    depends_on: tuple[str, ...] = ()
    if "depends_on" in data:
        names = data["depends_on"]
        if not isinstance(names, list) or not all(
            isinstance(n, str) and 1 <= len(n) <= REF_MAX_LENGTH for n in names
        ):
            errors["depends_on"] = [
                f"Must be a list of job ids (or refs of earlier jobs of the batch), each 1-"
                f"{REF_MAX_LENGTH} characters."
            ]
        elif len(names) > DEPENDS_ON_MAX:
            errors["depends_on"] = [f"At most {DEPENDS_ON_MAX} dependencies."]
        else:
            depends_on = tuple(dict.fromkeys(names))
    ref = data.get("ref")
    if "ref" in data and (not isinstance(ref, str) or not 1 <= len(ref) <= REF_MAX_LENGTH):
        errors["ref"] = [f"Must be a string of 1-{REF_MAX_LENGTH} characters."]

    max_attempts = timeout_seconds = None
    validated_input: dict[str, Any] = {}
    if job_type is not None:
        max_attempts = _bounded_int(data, "max_attempts", 1, job_type.max_attempts_limit, errors)
        timeout_seconds = _bounded_int(
            data, "timeout_seconds", 1, job_type.max_timeout_seconds, errors
        )
        backoff: Any = data.get("retry_backoff_seconds")
        if "retry_backoff_seconds" in data and (
            not _is_number(backoff) or not 0.1 <= backoff <= job_type.retry_backoff_max_seconds
        ):
            errors["retry_backoff_seconds"] = [
                f"Must be a number from 0.1 to {job_type.retry_backoff_max_seconds}."
            ]
        raw_input = data.get("input", {})
        try:
            validated_input = job_type.validate_input(
                raw_input, max_bytes=settings.JOB_INPUT_MAX_BYTES
            )
        except ValidationFailed as exc:
            errors.update(exc.details)
        except PayloadTooLarge:
            if not errors:
                raise
            errors["input"] = ["Over the size limit."]

    if errors:
        raise ValidationFailed("The job submission is not valid.", details=errors)
    assert job_type is not None
    assert priority is not None
    return Submission(
        job_type=job_type,
        input=validated_input,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts or job_type.max_attempts,
        timeout_seconds=timeout_seconds or job_type.timeout_seconds,
        retry_backoff_seconds=data.get("retry_backoff_seconds"),
        webhook_url=webhook_url,
        webhook_events=webhook_events,
        metadata=metadata,
        concurrency_key=concurrency_key,
        concurrency_limit=concurrency_limit if concurrency_key is not None else None,
        unique_key=unique_key,
        # Like a limit without a key, a window without a unique_key has no effect.
        unique_for_seconds=unique_for_seconds if unique_key is not None else None,
        depends_on=depends_on,
        ref=ref,
    )
