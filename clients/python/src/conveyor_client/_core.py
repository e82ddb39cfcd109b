"""The client's logic without I/O, shared by :class:`Client` and :class:`AsyncClient`.

Each operation is a generator that yields what it needs done — a :class:`Call` (an HTTP request)
or a :class:`Sleep` — and receives the ``httpx.Response`` (or has the transport error thrown in).
The sync client drives it with ``httpx.Client`` and ``time.sleep``, the async one with
``httpx.AsyncClient`` and ``asyncio.sleep``: retries, backoff, long-polling and pagination are
written once, so the two clients cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar

import httpx

from conveyor_client.errors import (
    ConnectionFailed,
    ConveyorError,
    ValidationError,
    WaitTimeout,
    error_from_response,
)
from conveyor_client.models import Job, JobType, Schedule, WebhookDelivery

T = TypeVar("T")

#: Longest ``?wait=`` the API takes (API.md, "Waiting without polling").
LONG_POLL_MAX_SECONDS = 60


class SubmitOptions(TypedDict, total=False):
    """The optional fields of a submission (API.md, "Submission body" and its additions).

    ``idempotency_key`` is sent as the ``Idempotency-Key`` header; ``prefer_wait`` as
    ``Prefer: wait=N`` (the answer comes once the job is terminal, up to N seconds, else the
    job as it then is). ``wait``: the finished job or :class:`WaitTimeout` after that many
    seconds, in one request when the job finishes within a minute (``Prefer: wait``), long-polling
    after that, like :meth:`wait`. ``ref`` is
    for :meth:`submit_batch` entries only. Every other key is a body field; a field the server
    does not know is its 400 ``validation_error``, not the client's guess.
    """

    priority: str
    queue: str
    run_at: datetime | str
    delay_seconds: float
    max_attempts: int
    timeout_seconds: int
    retry_backoff_seconds: float
    webhook_url: str
    webhook_events: Sequence[str]
    metadata: Mapping[str, str]
    concurrency_key: str
    concurrency_limit: int
    unique_key: str
    unique_for_seconds: int
    depends_on: Sequence[str]
    ref: str
    idempotency_key: str
    prefer_wait: int
    wait: float


#: Each client method and the API operation it wraps (tests hold these to the OpenAPI document).
OPERATIONS: dict[str, tuple[str, str]] = {
    "submit": ("POST", "/api/v1/jobs"),
    "submit_batch": ("POST", "/api/v1/jobs/batch"),
    "get": ("GET", "/api/v1/jobs/{job_id}"),
    "wait": ("GET", "/api/v1/jobs/{job_id}"),
    "list": ("GET", "/api/v1/jobs"),
    "cancel": ("POST", "/api/v1/jobs/{job_id}/cancel"),
    "retry": ("POST", "/api/v1/jobs/{job_id}/retry"),
    "deliveries": ("GET", "/api/v1/jobs/{job_id}/deliveries"),
    "job_types": ("GET", "/api/v1/job-types"),
    "create_schedule": ("POST", "/api/v1/schedules"),
    "list_schedules": ("GET", "/api/v1/schedules"),
    "get_schedule": ("GET", "/api/v1/schedules/{schedule_id}"),
    "update_schedule": ("PATCH", "/api/v1/schedules/{schedule_id}"),
    "delete_schedule": ("DELETE", "/api/v1/schedules/{schedule_id}"),
    "trigger_schedule": ("POST", "/api/v1/schedules/{schedule_id}/trigger"),
}
#: The query parameters ``list(**filters)`` takes.
LIST_FILTERS = frozenset(
    {
        "status",
        "type",
        "queue",
        "metadata",
        "created_after",
        "created_before",
        "schedule_id",
        "limit",
        "cursor",
    }
)
#: The fields a schedule takes (create and update).
SCHEDULE_FIELDS = frozenset({"name", "cron", "timezone", "job", "enabled", "overlap"})

HEADER_OPTIONS = frozenset({"idempotency_key", "prefer_wait", "wait"})
BODY_OPTIONS = frozenset(SubmitOptions.__annotations__) - HEADER_OPTIONS


@dataclass
class Call:
    """One HTTP request. ``replayable``: safe to send again after a transport error that may
    have reached the server (GETs, and POSTs carrying an Idempotency-Key)."""

    method: str
    path: str
    params: Any = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    replayable: bool = False


@dataclass
class Sleep:
    seconds: float


Step = Call | Sleep
Op = Generator[Step, Any, T]


@dataclass(frozen=True)
class RetryPolicy:
    """429, 503 (and 502/504 from a proxy) and connection failures are tried again ``retries``
    times, waiting ``Retry-After`` when the server says, else exponential backoff with full
    jitter from ``backoff`` up to ``max_backoff`` seconds. ``max_retry_after`` caps how long a
    Retry-After may make the client wait before it gives the error to the caller."""

    retries: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if retry_after is not None:
            return max(retry_after, backoff / 4)
        return backoff


RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


def new_idempotency_key() -> str:
    return f"cvc-{uuid.uuid4().hex}"


def request(policy: RetryPolicy, call: Call) -> Op[httpx.Response]:
    """Send ``call``; the response (2xx or 304), or the error of its code after the retries."""
    attempt = 0
    while True:
        try:
            response: httpx.Response = yield call
        except httpx.TransportError as exc:
            # A failed connect never reached the server: always safe to send again. Anything
            # later (a read timeout, a reset) may have been acted on: only a replayable call.
            safe = call.replayable or isinstance(exc, httpx.ConnectError)
            if attempt >= policy.retries or not safe:
                raise ConnectionFailed(
                    f"{call.method} {call.path}: {type(exc).__name__}: {exc}"
                ) from exc
            yield Sleep(policy.delay(attempt, None))
            attempt += 1
            continue
        if response.status_code < 400:
            return response
        error = error_from_response(response.status_code, response.content, response.headers)
        retryable = response.status_code in RETRYABLE_STATUSES or (
            # The same key's first try is still being handled (e.g. a try that timed out
            # client-side): its answer will be replayed once it is done.
            error.code == "idempotency_in_progress" and call.replayable
        )
        if (
            not retryable
            or attempt >= policy.retries
            or (error.retry_after or 0) > policy.max_retry_after
        ):
            raise error
        yield Sleep(policy.delay(attempt, error.retry_after))
        attempt += 1


def _json(response: httpx.Response) -> Any:
    return json.loads(response.content) if response.content else None


def _job(response: httpx.Response) -> Job:
    job = Job.from_dict(_json(response))
    return dataclasses.replace(job, etag=response.headers.get("ETag"))


def _time(value: datetime | str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def submission(type: str, input: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict:
    """The body of one submission: ``type``, ``input`` and the options given (None = left out)."""
    unknown = set(options) - BODY_OPTIONS - HEADER_OPTIONS
    if unknown:
        raise TypeError(f"unknown submission option(s): {', '.join(sorted(unknown))}")
    body: dict[str, Any] = {"type": type, "input": dict(input or {})}
    for name, value in options.items():
        if name in HEADER_OPTIONS or value is None:
            continue
        if name == "run_at":
            value = _time(value)
        elif name in ("webhook_events", "depends_on"):
            value = list(value)
        elif name == "metadata":
            value = dict(value)
        body[name] = value
    return body


def _submit_headers(options: Mapping[str, Any]) -> dict[str, str]:
    # One key for every try of this submission: a retry after a lost answer replays the first
    # answer instead of creating a second job.
    headers = {"Idempotency-Key": options.get("idempotency_key") or new_idempotency_key()}
    if options.get("prefer_wait"):
        headers["Prefer"] = f"wait={int(options['prefer_wait'])}"
    return headers


def submit(
    policy: RetryPolicy, type: str, input: Mapping[str, Any] | None, options: Mapping[str, Any]
) -> Op[Job]:
    body = submission(type, input, options)
    headers = _submit_headers(options)
    wait_for = options.get("wait")
    deadline = None
    if wait_for is not None:
        if wait_for <= 0:
            raise ValueError("wait must be a positive number of seconds")
        deadline = time.monotonic() + wait_for
        if int(min(LONG_POLL_MAX_SECONDS, wait_for)) >= 1:
            headers["Prefer"] = f"wait={int(min(LONG_POLL_MAX_SECONDS, wait_for))}"
    prefer = headers.get("Prefer", "")
    timeout = float(prefer.removeprefix("wait=")) + 10 if prefer else None
    call = Call("POST", "jobs", body=body, headers=headers, timeout=timeout, replayable=True)
    response = yield from request(policy, call)
    job = _job(response)
    if deadline is None or job.is_terminal:
        return job
    # Still running when the server's wait ran out (or none was asked): long-poll from the
    # answer's version for what is left of ``wait``.
    remaining = max(0.0, deadline - time.monotonic())
    return (yield from wait(policy, job.id, remaining, None, job))


def submit_batch(
    policy: RetryPolicy, jobs: Sequence[Mapping[str, Any]], idempotency_key: str | None
) -> Op[list[Job]]:
    """``jobs``: dicts with ``type``, ``input`` and any :class:`SubmitOptions` body field."""
    bodies = []
    for entry in jobs:
        entry = dict(entry)
        if "type" not in entry:
            raise TypeError("every batch entry needs a 'type'")
        bodies.append(submission(entry.pop("type"), entry.pop("input", None), entry))
    call = Call(
        "POST",
        "jobs/batch",
        body={"jobs": bodies},
        headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
        replayable=True,
    )
    response = yield from request(policy, call)
    return [Job.from_dict(item) for item in _json(response)["jobs"]]


def _path_id(value: str) -> str:
    text = str(value)
    if not text or "/" in text or text in (".", ".."):
        raise ValueError(f"not an id: {value!r}")
    return text


def get(policy: RetryPolicy, job_id: str) -> Op[Job]:
    response = yield from request(policy, Call("GET", f"jobs/{_path_id(job_id)}", replayable=True))
    return _job(response)


def job_action(policy: RetryPolicy, job_id: str, action: str) -> Op[Job]:
    # Not replayable on a lost answer: a second retry of a job that the first one restarted
    # is a 409, and the caller should see what really happened.
    response = yield from request(policy, Call("POST", f"jobs/{_path_id(job_id)}/{action}"))
    return _job(response)


def deliveries(policy: RetryPolicy, job_id: str) -> Op[list[WebhookDelivery]]:
    call = Call("GET", f"jobs/{_path_id(job_id)}/deliveries", replayable=True)
    response = yield from request(policy, call)
    return [WebhookDelivery.from_dict(item) for item in _json(response)["results"]]


def job_types(policy: RetryPolicy) -> Op[list[JobType]]:
    response = yield from request(policy, Call("GET", "job-types", replayable=True))
    return [JobType.from_dict(item) for item in _json(response)["results"]]


def list_params(filters: Mapping[str, Any]) -> dict[str, Any]:
    """``list(**filters)``: ``status``/``type``/``queue`` (a string or several), ``metadata``
    (a dict, sent as ``metadata[key]=value``), ``created_after``/``created_before``,
    ``schedule_id`` (the jobs a schedule fired), ``limit``."""
    params: dict[str, Any] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if name in ("status", "type", "queue"):
            params[name] = value if isinstance(value, str) else ",".join(value)
        elif name == "metadata":
            for key, item in dict(value).items():
                params[f"metadata[{key}]"] = item
        elif name in ("created_after", "created_before"):
            params[name] = _time(value)
        elif name in ("limit", "cursor"):
            params[name] = value
        elif name == "schedule_id":
            params[name] = str(value)
        else:
            raise TypeError(f"unknown filter: {name} (filters: {', '.join(sorted(LIST_FILTERS))})")
    return params


def page(policy: RetryPolicy, path: str, params: Any) -> Op[tuple[list[dict], str | None]]:
    """One page of a cursor-paginated list: its items and the next page's URL (or None)."""
    response = yield from request(policy, Call("GET", path, params=params, replayable=True))
    data = _json(response)
    return data["results"], data.get("next")


def create_schedule(
    policy: RetryPolicy,
    *,
    name: str,
    cron: str,
    job: Mapping[str, Any],
    timezone: str | None,
    enabled: bool | None,
    overlap: str | None,
) -> Op[Schedule]:
    body: dict[str, Any] = {"name": name, "cron": cron, "job": _schedule_job(job)}
    for key, value in (("timezone", timezone), ("enabled", enabled), ("overlap", overlap)):
        if value is not None:
            body[key] = value
    response = yield from request(policy, Call("POST", "schedules", body=body))
    return Schedule.from_dict(_json(response))


def _schedule_job(job: Mapping[str, Any]) -> dict[str, Any]:
    entry = dict(job)
    if "type" not in entry:
        raise TypeError("a schedule's job needs a 'type'")
    return submission(entry.pop("type"), entry.pop("input", None), entry)


def get_schedule(policy: RetryPolicy, schedule_id: str) -> Op[Schedule]:
    call = Call("GET", f"schedules/{_path_id(schedule_id)}", replayable=True)
    response = yield from request(policy, call)
    return Schedule.from_dict(_json(response))


def update_schedule(
    policy: RetryPolicy, schedule_id: str, changes: Mapping[str, Any]
) -> Op[Schedule]:
    unknown = set(changes) - SCHEDULE_FIELDS
    if unknown:
        raise TypeError(f"unknown schedule field(s): {', '.join(sorted(unknown))}")
    body = {key: value for key, value in changes.items() if value is not None}
    if "job" in body:
        body["job"] = _schedule_job(body["job"])
    call = Call("PATCH", f"schedules/{_path_id(schedule_id)}", body=body, replayable=True)
    response = yield from request(policy, call)
    return Schedule.from_dict(_json(response))


def delete_schedule(policy: RetryPolicy, schedule_id: str) -> Op[None]:
    call = Call("DELETE", f"schedules/{_path_id(schedule_id)}", replayable=True)
    yield from request(policy, call)


def trigger_schedule(policy: RetryPolicy, schedule_id: str) -> Op[Job]:
    call = Call("POST", f"schedules/{_path_id(schedule_id)}/trigger")
    response = yield from request(policy, call)
    return _job(response)


@dataclass
class PollBackoff:
    """Polling when the server does not long-poll: 50 ms, growing by half up to ``cap``."""

    delay: float = 0.05
    cap: float = 2.0

    def next(self) -> float:
        current = self.delay
        self.delay = min(self.cap, self.delay * 1.5)
        return current


def wait(
    policy: RetryPolicy,
    job_id: str,
    timeout: float | None,
    on_progress: Callable[[Job], Any] | None,
    initial: Job | None = None,
    poll_cap: float = 2.0,
) -> Op[Job]:
    """Until the job is terminal: long-polls ``GET /jobs/{id}?wait=N`` with ``If-None-Match``
    (one request per change, answered the moment the job changes); a server that ignores
    ``wait`` (answers at once with an unchanged ETag) or refuses it is polled with backoff."""
    path = f"jobs/{_path_id(job_id)}"
    deadline = None if timeout is None else time.monotonic() + timeout
    long_poll = True
    backoff = PollBackoff(cap=poll_cap)
    etag: str | None = None
    last_progress: Any = None
    job: Job | None = None
    if initial is not None:
        # A job just submitted or read: long-poll from its version at once (one request fewer);
        # one already finished is the answer.
        job, etag = initial, initial.etag
        if on_progress is not None and job.progress is not None:
            last_progress = (job.progress.percent, job.progress.message)
            on_progress(job)
        if job.is_terminal:
            return job
    while True:
        remaining = math.inf if deadline is None else deadline - time.monotonic()
        seconds = int(min(LONG_POLL_MAX_SECONDS, remaining))
        headers = {"If-None-Match": etag} if etag else {}
        params = {"wait": seconds} if long_poll and etag and seconds >= 1 else None
        call = Call(
            "GET",
            path,
            params=params,
            headers=headers,
            timeout=(seconds + 10.0) if params else None,
            replayable=True,
        )
        asked = time.monotonic()
        try:
            response = yield from request(policy, call)
        except ValidationError as exc:
            if params is None or "wait" not in exc.details:
                raise
            long_poll = False  # a server that validates but does not offer ?wait
            continue
        # A long-poll's 304 comes after its N seconds; sooner, the server ignored ?wait.
        if (
            response.status_code == 304
            and params is not None
            and time.monotonic() - asked < params["wait"] / 2
        ):
            long_poll = False
        if response.status_code != 304:  # 304: nothing changed (a poll, or a long-poll ran out)
            new_etag = response.headers.get("ETag")
            if params is not None and new_etag == etag:
                long_poll = False  # answered at once, unchanged: ?wait is not supported
            etag = new_etag
            job = Job.from_dict(_json(response))
            if on_progress is not None and job.progress is not None:
                progress = (job.progress.percent, job.progress.message)
                if progress != last_progress:
                    last_progress = progress
                    on_progress(job)
            if job.is_terminal:
                return job
        if deadline is not None and time.monotonic() >= deadline:
            assert job is not None
            raise WaitTimeout(f"job {job_id} is still {job.status} after {timeout} s", job=job)
        if not (long_poll and etag):
            pause = backoff.next()
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            yield Sleep(pause)


def base_url(url: str) -> str:
    """``https://host`` or ``https://host/api/v1`` → ``https://host/api/v1/``."""
    url = url.rstrip("/")
    if not url.endswith("/api/v1"):
        url += "/api/v1"
    return url + "/"


__all__ = ["ConveyorError", "RetryPolicy", "SubmitOptions"]
