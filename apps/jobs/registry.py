"""The job-type registry and the contract between Conveyor and a job handler.

A job type is declared in a module listed in ``settings.CONVEYOR_JOB_TYPE_MODULES`` (imported when
the jobs app starts), with the ``job_type`` decorator::

    class ResizeInput(serializers.Serializer):
        url = serializers.URLField()
        width = serializers.IntegerField(min_value=1, max_value=8000)

    @job_type("images.resize", input=ResizeInput, queue="heavy", timeout_seconds=120)
    def resize(ctx: JobContext, input: dict) -> dict:
        ...
        ctx.report_progress(50, "downloaded")
        if ctx.cancel_requested():
            raise JobCanceled()
        return {"thumbnail_url": ...}

A handler knows nothing of HTTP. It returns a JSON-serialisable dict (the job's ``result``); it
raises ``PermanentError`` for a failure that retrying cannot fix, and anything else for one that it
can. docs/job-types.md has the whole guide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module
from typing import Any, Protocol

import orjson
from rest_framework import serializers

from apps.core.errors import PayloadTooLarge, ValidationFailed
from apps.jobs.queues import DEFAULT_QUEUE


class JobContext(Protocol):
    """What a handler gets besides its input."""

    @property
    def job_id(self) -> str: ...

    @property
    def attempt(self) -> int:
        """1 for the first attempt, 2 for the first retry, and so on."""
        ...

    def report_progress(self, percent: int, message: str = "") -> None:
        """Record progress (0-100) with a short message; clients see it when they poll."""
        ...

    def cancel_requested(self) -> bool:
        """True once a client asked to cancel this running job: stop and raise JobCanceled."""
        ...

    @property
    def dependency_results(self) -> dict[str, Any]:
        """The results of the jobs it depends on (``depends_on``), by job id: all of them
        succeeded before it started. Empty for a job without dependencies."""
        ...


class PermanentError(Exception):
    """A failure that a retry cannot fix: the job fails at once with this code and message
    (and ``details``, a small JSON object, as the error's ``details`` when given)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "permanent_error",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class RetryableError(Exception):
    """A transient failure, with a code of the handler's choosing. (Any other exception that is
    not a PermanentError is retried too, with code ``error``.) ``details`` as PermanentError's."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "retryable_error",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class JobCanceled(Exception):
    """Raised by a handler that saw ``ctx.cancel_requested()``: the job ends ``canceled``."""


class JobStopped(Exception):
    """The base of what the worker raises inside a handler to stop it (its timeout): a handler
    that catches every exception must let this one through."""


Handler = Callable[[JobContext, dict[str, Any]], dict[str, Any] | None]

# What a job type's name and its queue's name look like (the list filters refuse anything else).
NAME_PATTERN = r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*"
QUEUE_PATTERN = r"[a-z][a-z0-9_\-]*"
_NAME = re.compile(NAME_PATTERN)
_QUEUE = re.compile(QUEUE_PATTERN)


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Handler
    input_serializer: type[serializers.Serializer]
    description: str = ""
    queue: str = DEFAULT_QUEUE
    timeout_seconds: int = 300
    max_timeout_seconds: int = 3600
    max_attempts: int = 3
    max_attempts_limit: int = 25
    retry_backoff_seconds: float = 2.0
    retry_backoff_max_seconds: float = 600.0
    retry_on_timeout: bool = True
    max_input_bytes: int | None = None
    sensitive_input_fields: frozenset[str] = field(default_factory=frozenset)
    # Starts per period, cluster-wide: "20/s", "600/m", "1000/h" (API.md, "Sharing the pools").
    rate_limit: str | None = None

    def __post_init__(self) -> None:
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"job type name {self.name!r} must look like 'family.action'")
        if not _QUEUE.fullmatch(self.queue):
            raise ValueError(f"queue name {self.queue!r} must be lower-case letters, digits, -_")
        if not 1 <= self.timeout_seconds <= self.max_timeout_seconds:
            raise ValueError(f"{self.name}: timeout_seconds must be in 1..max_timeout_seconds")
        if not 1 <= self.max_attempts <= self.max_attempts_limit:
            raise ValueError(f"{self.name}: max_attempts must be in 1..max_attempts_limit")

    @cached_property
    def input_schema(self) -> dict[str, Any]:
        from apps.jobs.schema import serializer_json_schema

        return serializer_json_schema(self.input_serializer())

    def validate_input(self, data: Any, *, max_bytes: int) -> dict[str, Any]:
        """The input with defaults filled in, or ValidationFailed / PayloadTooLarge."""
        limit = min(max_bytes, self.max_input_bytes or max_bytes)
        if len(orjson.dumps(data)) > limit:
            raise PayloadTooLarge(
                f"The job input is over the limit of {limit} bytes for {self.name}.",
                details={"input": [f"Over {limit} bytes."], "limit_bytes": limit},
            )
        if not isinstance(data, dict):
            raise ValidationFailed(
                "The job input must be a JSON object.", details={"input": ["Expected an object."]}
            )
        from apps.jobs.schema import type_problems

        errors: dict[str, Any] = {}
        validated: dict[str, Any] = {}
        try:
            validated = self._validator.run_validation(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail if isinstance(exc.detail, dict) else {"input": exc.detail})
        errors.update(type_problems(self.input_schema, data) or {})
        for unknown in sorted(set(data) - set(self._validator.fields)):
            errors[unknown] = ["Unknown field."]
        if errors:
            from apps.core.exception_handler import flatten_details

            raise ValidationFailed(
                f"The input does not match the schema of {self.name}.",
                details=flatten_details({"input": errors}),
            )
        return dict(validated)

    @cached_property
    def _validator(self) -> serializers.Serializer:
        # One bound serializer per type, reused: building a serializer deep-copies its fields,
        # which would be most of the cost of validating a small input. Validation keeps no
        # state on the instance.
        return self.input_serializer()


_registry: dict[str, JobType] = {}
_RATE = re.compile(r"([1-9][0-9]{0,6})/([smh])")
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """ "20/s" → (20, 1): starts per period of that many seconds; ValueError if malformed."""
    match = _RATE.fullmatch(rate)
    if match is None:
        raise ValueError(f"rate_limit {rate!r} must look like '20/s', '600/m' or '1000/h'")
    return int(match[1]), _PERIOD_SECONDS[match[2]]


def rate_limits() -> dict[str, tuple[int, int]]:
    """The rate-limited job types: name → (starts, period seconds)."""
    return {
        jt.name: parse_rate(jt.rate_limit) for jt in _registry.values() if jt.rate_limit is not None
    }


def register(job_type_: JobType) -> JobType:
    existing = _registry.get(job_type_.name)
    if existing is not None and existing.handler is not job_type_.handler:
        raise ValueError(f"job type {job_type_.name!r} is registered twice")
    _registry[job_type_.name] = job_type_
    return job_type_


def job_type(
    name: str, *, input: type[serializers.Serializer], **options: Any
) -> Callable[[Handler], Handler]:
    """Declare the decorated function as the handler of job type ``name``."""

    def decorate(handler: Handler) -> Handler:
        description = options.pop("description", None) or (handler.__doc__ or "").strip()
        register(
            JobType(
                name=name,
                handler=handler,
                input_serializer=input,
                description=description,
                **options,
            )
        )
        return handler

    return decorate


def get_job_type(name: str) -> JobType | None:
    return _registry.get(name)


def all_job_types() -> list[JobType]:
    return sorted(_registry.values(), key=lambda jt: jt.name)


def queues() -> list[str]:
    """Every queue some registered job type runs on."""
    return sorted({jt.queue for jt in _registry.values()})


def load_job_type_modules(modules: Iterable[str]) -> None:
    for module in modules:
        import_module(module)
