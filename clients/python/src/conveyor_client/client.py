"""The synchronous client."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Unpack

import httpx

from conveyor_client import _core
from conveyor_client._core import Call, Op, RetryPolicy, Sleep, SubmitOptions, T
from conveyor_client._version import __version__
from conveyor_client.models import Job, JobType, Schedule, WebhookDelivery

USER_AGENT = f"conveyor-client-python/{__version__}"


def _headers(api_key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


class Client:
    """A Conveyor API client. ``url`` is the server (``https://jobs.example.com``, with or
    without ``/api/v1``); ``timeout`` bounds each request (a long-poll gets its wait on top).
    Use it as a context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.url = _core.base_url(url)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self._http = http_client or httpx.Client(timeout=timeout)
        self._headers = _headers(api_key)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> httpx.Response:
        return self._http.request(
            call.method,
            call.path if call.path.startswith("http") else self.url + call.path,
            params=call.params,
            json=call.body,
            headers={**self._headers, **call.headers},
            timeout=call.timeout if call.timeout is not None else self.timeout,
        )

    def _run(self, op: Op[T]) -> T:
        try:
            # An operation may finish without a request (wait() on a job already terminal).
            step: Any = next(op)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    response = self._send(step)
                except httpx.TransportError as exc:
                    step = op.throw(exc)
                else:
                    step = op.send(response)
        except StopIteration as stop:
            return stop.value

    # Jobs

    def submit(
        self, type: str, input: Mapping[str, Any] | None = None, **options: Unpack[SubmitOptions]
    ) -> Job:
        """Submit one job; the stored job (``status`` queued or scheduled, or terminal with
        ``prefer_wait``). Retried on 429/503/connection failures under one Idempotency-Key.
        ``wait=seconds``: the job once terminal (submit and :meth:`wait` in one call, a single
        request when it finishes within a minute), :class:`~conveyor_client.WaitTimeout` after."""
        return self._run(_core.submit(self.retry_policy, type, input, options))

    def submit_batch(
        self, jobs: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> builtins.list[Job]:
        """Up to 1000 jobs (dicts of ``type``, ``input`` and options), all or none."""
        return self._run(_core.submit_batch(self.retry_policy, jobs, idempotency_key))

    def get(self, job_id: str) -> Job:
        return self._run(_core.get(self.retry_policy, job_id))

    def wait(
        self,
        job_id: str | Job,
        *,
        timeout: float | None = None,
        on_progress: Callable[[Job], Any] | None = None,
    ) -> Job:
        """The job once terminal (succeeded, failed or canceled: check ``.status``);
        :class:`~conveyor_client.WaitTimeout` after ``timeout`` seconds (None: no limit).
        ``on_progress(job)`` is called each time the job's progress changes."""
        initial = job_id if isinstance(job_id, Job) else None
        ident = job_id.id if isinstance(job_id, Job) else job_id
        return self._run(_core.wait(self.retry_policy, ident, timeout, on_progress, initial))

    def cancel(self, job_id: str) -> Job:
        return self._run(_core.job_action(self.retry_policy, job_id, "cancel"))

    def retry(self, job_id: str) -> Job:
        return self._run(_core.job_action(self.retry_policy, job_id, "retry"))

    def list(self, **filters: Any) -> Iterator[Job]:
        """Your jobs, newest first, across every page: ``status``, ``type``, ``queue`` (a string
        or a list), ``metadata`` (dict), ``created_after``/``created_before``, ``limit``."""
        url: str | None = "jobs"
        params: Any = _core.list_params(filters)
        while url:
            items, url = self._run(_core.page(self.retry_policy, url, params))
            params = None  # the next URL carries the filters and the cursor
            yield from (Job.from_dict(item) for item in items)

    def deliveries(self, job_id: str) -> builtins.list[WebhookDelivery]:
        """The webhook deliveries of a job (one per event), with their attempts."""
        return self._run(_core.deliveries(self.retry_policy, job_id))

    def job_types(self) -> builtins.list[JobType]:
        return self._run(_core.job_types(self.retry_policy))

    # Schedules

    def create_schedule(
        self,
        name: str,
        cron: str,
        job: Mapping[str, Any],
        *,
        timezone: str | None = None,
        enabled: bool | None = None,
        overlap: str | None = None,
    ) -> Schedule:
        """``job``: a submission (``type``, ``input``, options) fired on each ``cron`` tick."""
        return self._run(
            _core.create_schedule(
                self.retry_policy,
                name=name,
                cron=cron,
                job=job,
                timezone=timezone,
                enabled=enabled,
                overlap=overlap,
            )
        )

    def list_schedules(self, *, limit: int | None = None) -> Iterator[Schedule]:
        url: str | None = "schedules"
        params: Any = {"limit": limit} if limit else None
        while url:
            items, url = self._run(_core.page(self.retry_policy, url, params))
            params = None
            yield from (Schedule.from_dict(item) for item in items)

    def get_schedule(self, schedule_id: str) -> Schedule:
        return self._run(_core.get_schedule(self.retry_policy, schedule_id))

    def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change ``name``, ``cron``, ``timezone``, ``job``, ``enabled`` or ``overlap``."""
        return self._run(_core.update_schedule(self.retry_policy, schedule_id, changes))

    def delete_schedule(self, schedule_id: str) -> None:
        self._run(_core.delete_schedule(self.retry_policy, schedule_id))

    def trigger_schedule(self, schedule_id: str) -> Job:
        """Run the schedule's job now; the job."""
        return self._run(_core.trigger_schedule(self.retry_policy, schedule_id))
