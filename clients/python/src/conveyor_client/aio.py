"""The asyncio client: the same methods as :class:`~conveyor_client.Client`, awaited.

Both run the same operations (``_core``); only the driver differs: ``httpx.AsyncClient`` and
``asyncio.sleep``. One AsyncClient shares its connection pool between concurrent tasks, which is
how a service submits many jobs at once (``asyncio.gather(*(c.submit(…) for …))``).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Unpack

import httpx

from conveyor_client import _core
from conveyor_client._core import Call, Op, RetryPolicy, Sleep, SubmitOptions, T
from conveyor_client.client import _headers
from conveyor_client.models import Job, JobType, Schedule, WebhookDelivery


class AsyncClient:
    """``async with AsyncClient(url, api_key) as conveyor: await conveyor.submit(…)``.

    ``max_connections`` bounds the connections kept to the server (httpx's pool); more
    concurrent calls than that queue for a connection rather than opening new ones.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        max_connections: int = 100,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = _core.base_url(url)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = http_client or httpx.AsyncClient(timeout=timeout, limits=limits)
        self._headers = _headers(api_key)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        return await self._http.request(
            call.method,
            call.path if call.path.startswith("http") else self.url + call.path,
            params=call.params,
            json=call.body,
            headers={**self._headers, **call.headers},
            timeout=call.timeout if call.timeout is not None else self.timeout,
        )

    async def _run(self, op: Op[T]) -> T:
        try:
            # An operation may finish without a request (wait() on a job already terminal).
            step: Any = next(op)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    response = await self._send(step)
                except httpx.TransportError as exc:
                    step = op.throw(exc)
                else:
                    step = op.send(response)
        except StopIteration as stop:
            return stop.value

    # Jobs

    async def submit(
        self, type: str, input: Mapping[str, Any] | None = None, **options: Unpack[SubmitOptions]
    ) -> Job:
        """See :meth:`conveyor_client.Client.submit`."""
        return await self._run(_core.submit(self.retry_policy, type, input, options))

    async def submit_batch(
        self, jobs: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> builtins.list[Job]:
        return await self._run(_core.submit_batch(self.retry_policy, jobs, idempotency_key))

    async def get(self, job_id: str) -> Job:
        return await self._run(_core.get(self.retry_policy, job_id))

    async def wait(
        self,
        job_id: str | Job,
        *,
        timeout: float | None = None,
        on_progress: Callable[[Job], Any] | None = None,
    ) -> Job:
        """See :meth:`conveyor_client.Client.wait`."""
        initial = job_id if isinstance(job_id, Job) else None
        ident = job_id.id if isinstance(job_id, Job) else job_id
        return await self._run(_core.wait(self.retry_policy, ident, timeout, on_progress, initial))

    async def cancel(self, job_id: str) -> Job:
        return await self._run(_core.job_action(self.retry_policy, job_id, "cancel"))

    async def retry(self, job_id: str) -> Job:
        return await self._run(_core.job_action(self.retry_policy, job_id, "retry"))

    async def list(self, **filters: Any) -> AsyncIterator[Job]:
        """``async for job in conveyor.list(status="failed")``: every page, newest first."""
        url: str | None = "jobs"
        params: Any = _core.list_params(filters)
        while url:
            items, url = await self._run(_core.page(self.retry_policy, url, params))
            params = None
            for item in items:
                yield Job.from_dict(item)

    async def deliveries(self, job_id: str) -> builtins.list[WebhookDelivery]:
        """The webhook deliveries of a job (one per event), with their attempts."""
        return await self._run(_core.deliveries(self.retry_policy, job_id))

    async def job_types(self) -> builtins.list[JobType]:
        return await self._run(_core.job_types(self.retry_policy))

    # Schedules

    async def create_schedule(
        self,
        name: str,
        cron: str,
        job: Mapping[str, Any],
        *,
        timezone: str | None = None,
        enabled: bool | None = None,
        overlap: str | None = None,
    ) -> Schedule:
        return await self._run(
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

    async def list_schedules(self, *, limit: int | None = None) -> AsyncIterator[Schedule]:
        url: str | None = "schedules"
        params: Any = {"limit": limit} if limit else None
        while url:
            items, url = await self._run(_core.page(self.retry_policy, url, params))
            params = None
            for item in items:
                yield Schedule.from_dict(item)

    async def get_schedule(self, schedule_id: str) -> Schedule:
        return await self._run(_core.get_schedule(self.retry_policy, schedule_id))

    async def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        return await self._run(_core.update_schedule(self.retry_policy, schedule_id, changes))

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._run(_core.delete_schedule(self.retry_policy, schedule_id))

    async def trigger_schedule(self, schedule_id: str) -> Job:
        return await self._run(_core.trigger_schedule(self.retry_policy, schedule_id))
