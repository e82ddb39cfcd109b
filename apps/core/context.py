"""Per-request (or per-job) context that log lines, Sentry events and messages pick up."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The HttpRequest being served, for error reports that need its method and path.
request_var: ContextVar[Any] = ContextVar("request", default=None)
# The job a worker is running (a Job row), so that log lines and Sentry events of the attempt
# name it, and the Sentry scrubber knows which input values to keep out of events.
job_var: ContextVar[Any] = ContextVar("job", default=None)
# Input values of that job that its type marks sensitive: kept out of log lines and Sentry events.
sensitive_values_var: ContextVar[tuple[str, ...]] = ContextVar("sensitive_values", default=())

# A caller-supplied X-Request-ID is echoed only when it is a plain token: no spaces, no control
# characters, nothing that could split a header or forge a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def clean_request_id(candidate: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if candidate and _SANE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def current_request() -> Any:
    return request_var.get()


def current_job() -> Any:
    return job_var.get()


def current_sensitive_values() -> tuple[str, ...]:
    return sensitive_values_var.get()


class bound_job:
    """Run a job attempt with the job and its submitting request's id in context.

    Broker messages are wake-ups that name no job, so the worker binds the id stored on the
    job row (``Job.request_id``) for as long as it runs the job: every log line and Sentry
    event of the attempt carries the id of the HTTP request that submitted it.
    """

    __slots__ = ("_job", "_job_token", "_request_token", "_sensitive", "_sensitive_token")

    def __init__(self, job: Any, sensitive_values: tuple[str, ...] = ()) -> None:
        self._job = job
        self._sensitive = sensitive_values

    def __enter__(self) -> None:
        self._request_token: Token[str | None] = request_id_var.set(self._job.request_id or None)
        self._job_token: Token[Any] = job_var.set(self._job)
        self._sensitive_token = sensitive_values_var.set(self._sensitive)

    def __exit__(self, *exc: object) -> None:
        sensitive_values_var.reset(self._sensitive_token)
        job_var.reset(self._job_token)
        request_id_var.reset(self._request_token)
