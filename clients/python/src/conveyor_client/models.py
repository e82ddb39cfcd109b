"""Typed views of the API's objects. Each keeps the whole answer in ``raw``, and ignores fields
it does not know, so a newer server's additions neither break nor get lost."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time of the API (``…Z`` or with an offset) as an aware datetime."""
    if not value:
        return None
    text = str(value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _build(cls: Any, data: dict[str, Any], times: tuple[str, ...]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
    values = {name: data.get(name) for name in names if name in data}
    for name in times:
        if name in values:
            values[name] = parse_time(values[name])
    return cls(**values, raw=data)


@dataclass(frozen=True)
class JobError:
    """A job's last error. ``details``: what the job type adds, when it does (a Django task's
    ``exception_class`` and ``traceback``, for one); ``{}`` otherwise."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobError:
        details = data.get("details")
        return cls(
            str(data.get("code", "")),
            str(data.get("message", "")),
            dict(details) if isinstance(details, dict) else {},
        )


@dataclass(frozen=True)
class Progress:
    percent: int
    message: str = ""


@dataclass(frozen=True)
class Job:
    id: str
    type: str
    status: str
    input: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: JobError | None = None
    progress: Progress | None = None
    priority: str = "normal"
    queue: str = ""
    attempts: int = 0
    max_attempts: int = 0
    timeout_seconds: int = 0
    retry_backoff_seconds: float | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None
    webhook_events: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    unique_key: str | None = None
    unique_for_seconds: int | None = None
    wait_reason: str | None = None
    depends_on: list[str] = field(default_factory=list)
    schedule_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: The answer's ETag: ``wait(job)`` long-polls from this version without reading it again.
    etag: str | None = field(default=None, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        job: Job = _build(cls, data, ("created_at", "run_at", "started_at", "finished_at"))
        error = data.get("error")
        progress = data.get("progress")
        return dataclasses.replace(
            job,
            error=JobError.from_dict(error) if isinstance(error, dict) else None,
            progress=Progress(int(progress.get("percent") or 0), str(progress.get("message") or ""))
            if isinstance(progress, dict)
            else None,
        )


@dataclass(frozen=True)
class JobType:
    name: str
    description: str = ""
    queue: str = ""
    timeout_seconds: int = 0
    max_timeout_seconds: int = 0
    max_attempts: int = 0
    max_attempts_limit: int = 0
    input_schema: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobType:
        result: JobType = _build(cls, data, ())
        return result


@dataclass(frozen=True)
class Schedule:
    id: str
    name: str
    cron: str
    timezone: str = "UTC"
    job: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    overlap: str = "skip"
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: str | None = None
    last_skipped_at: datetime | None = None
    last_skip_reason: str | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        result: Schedule = _build(
            cls, data, ("next_run_at", "last_run_at", "last_skipped_at", "created_at")
        )
        return result


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook event sent (or being sent) for a job, with its attempts (raw dicts)."""

    webhook_id: str
    event_type: str
    status: str
    url: str = ""
    sequence: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None
    delivered_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebhookDelivery:
        result: WebhookDelivery = _build(
            cls, data, ("next_attempt_at", "created_at", "delivered_at")
        )
        return result


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook: ``type`` such as ``job.succeeded``, ``job`` the job it is about."""

    id: str
    type: str
    timestamp: datetime | None
    job: Job
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
