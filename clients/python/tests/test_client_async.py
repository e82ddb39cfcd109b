"""AsyncClient against the live server: the same methods as Client, awaited."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from conveyor_client import AsyncClient, InvalidState, NotFound, ValidationError, WaitTimeout


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def aclient(conveyor_server):
    return lambda: AsyncClient(conveyor_server.url, conveyor_server.tenant.api_key, timeout=10)


def test_async_submit_wait_and_progress(aclient) -> None:
    async def scenario():
        async with aclient() as conveyor:
            job = await conveyor.submit(
                "diagnostics.echo",
                {"message": "a", "sleep_seconds": 0.4, "progress_steps": 2},
                metadata={"via": "async"},
            )
            seen = []
            done = await conveyor.wait(job.id, timeout=30, on_progress=seen.append)
            return job, done, seen

    job, done, seen = run(scenario())
    assert job.metadata == {"via": "async"}
    assert done.status == "succeeded"
    assert done.result == {"message": "a", "attempt": 1}
    assert [j.progress.percent for j in seen][-1] == 100


def test_async_concurrent_submissions_share_one_client(aclient) -> None:
    label = uuid.uuid4().hex

    async def scenario():
        async with aclient() as conveyor:
            jobs = await asyncio.gather(
                *(
                    conveyor.submit("diagnostics.echo", {"message": str(i)}, metadata={"l": label})
                    for i in range(20)
                )
            )
            listed = [job async for job in conveyor.list(metadata={"l": label}, limit=7)]
            return jobs, listed

    jobs, listed = run(scenario())
    assert len({j.id for j in jobs}) == 20
    assert {j.id for j in listed} == {j.id for j in jobs}


def test_async_get_cancel_retry_batch_types_and_errors(aclient) -> None:
    async def scenario():
        async with aclient() as conveyor:
            batch = await conveyor.submit_batch(
                [{"type": "diagnostics.echo", "input": {"message": "b"}, "delay_seconds": 600}]
            )
            job = await conveyor.get(batch[0].id)
            assert job.status == "scheduled"
            with pytest.raises(WaitTimeout):
                await conveyor.wait(job.id, timeout=1)
            assert (await conveyor.cancel(job.id)).status == "canceled"
            with pytest.raises(InvalidState):
                await conveyor.cancel(job.id)
            assert (await conveyor.retry(job.id)).status in {"queued", "running", "succeeded"}
            assert (await conveyor.wait(job.id, timeout=30)).status == "succeeded"
            with pytest.raises(NotFound):
                await conveyor.get(str(uuid.uuid4()))
            with pytest.raises(ValidationError):
                await conveyor.submit("diagnostics.echo", {})
            names = {t.name for t in await conveyor.job_types()}
            assert "diagnostics.echo" in names

    run(scenario())


def test_async_schedules(aclient) -> None:
    async def scenario():
        async with aclient() as conveyor:
            schedule = await conveyor.create_schedule(
                f"async-{uuid.uuid4().hex[:8]}",
                "0 * * * *",
                {"type": "diagnostics.echo", "input": {"message": "t"}},
                enabled=False,
            )
            assert schedule.enabled is False
            assert (await conveyor.get_schedule(schedule.id)).name == schedule.name
            ids = [s.id async for s in conveyor.list_schedules()]
            assert schedule.id in ids
            updated = await conveyor.update_schedule(schedule.id, cron="15 * * * *")
            assert updated.cron == "15 * * * *"
            job = await conveyor.trigger_schedule(schedule.id)
            assert (await conveyor.wait(job, timeout=30)).status == "succeeded"
            await conveyor.delete_schedule(schedule.id)
            with pytest.raises(NotFound):
                await conveyor.get_schedule(schedule.id)

    run(scenario())
