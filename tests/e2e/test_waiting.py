"""Long-polls (API.md, "Waiting without polling") against real gunicorn with real uvicorn workers:
``Prefer: wait=N`` on submission, ``GET /jobs/{id}?wait=N`` with If-None-Match."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core.fastcache import fast_cache, key
from tests.support.processes import ManagedProcess, start_web, wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]

LATER = {"type": "diagnostics.echo", "input": {"message": "later"}, "delay_seconds": 3600}


@pytest.fixture(scope="module")
def web(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One web process with one worker: every waiter of a test shares it."""
    process: ManagedProcess
    process, base = start_web(tmp_path_factory.mktemp("waiting-web"), workers=1)
    yield base
    process.stop()


def auth(tenant: Tenant, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}", **headers}


def submit_later(base: str, tenant: Tenant) -> dict[str, Any]:
    """A job scheduled an hour ahead: it changes only when the test changes it."""
    response = httpx.post(f"{base}/api/v1/jobs", json=LATER, headers=auth(tenant))
    assert response.status_code == 202
    return dict(response.json())


def waiters(tenant: Tenant) -> int:
    return int(fast_cache().client.zcard(key(f"waiters:{tenant.client.pk}")))


def in_background(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        result["response"] = call()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_prefer_wait_answers_200_once_the_job_succeeds(
    live_worker: Any, web: str, tenant: Tenant
) -> None:
    response = httpx.post(
        f"{web}/api/v1/jobs",
        json={"type": "diagnostics.echo", "input": {"message": "waited"}},
        headers=auth(tenant, Prefer="wait=30"),
        timeout=40,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Preference-Applied"] == "wait=30"
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["result"] == {"message": "waited", "attempt": 1}
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    # Read-your-writes: the plain GET agrees, with the same ETag.
    got = httpx.get(f"{web}/api/v1/jobs/{job['id']}", headers=auth(tenant))
    assert got.json()["status"] == "succeeded"
    assert got.headers["ETag"] == response.headers["ETag"]


def test_prefer_wait_answers_the_usual_202_when_the_job_does_not_finish(
    transactional_db: None, web: str, tenant: Tenant
) -> None:
    response = httpx.post(
        f"{web}/api/v1/jobs", json=LATER, headers=auth(tenant, Prefer="wait=1"), timeout=10
    )
    assert response.status_code == 202
    assert response.json()["status"] == "scheduled"
    assert response.headers["Location"] == f"/api/v1/jobs/{response.json()['id']}"
    wait_for(lambda: waiters(tenant) == 0, timeout=10)  # the wait gave its place back


def test_get_wait_answers_as_soon_as_the_job_changes(
    transactional_db: None, web: str, tenant: Tenant
) -> None:
    job = submit_later(web, tenant)
    url = f"{web}/api/v1/jobs/{job['id']}"
    etag = httpx.get(url, headers=auth(tenant)).headers["ETag"]
    thread, result = in_background(
        lambda: httpx.get(
            f"{url}?wait=30", headers=auth(tenant, **{"If-None-Match": etag}), timeout=40
        )
    )
    wait_for(lambda: waiters(tenant) == 1, timeout=10)
    assert httpx.post(f"{url}/cancel", headers=auth(tenant)).status_code == 200
    thread.join(40)
    response = result["response"]
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert response.headers["ETag"] != etag
    assert response.headers["ETag"] == httpx.get(url, headers=auth(tenant)).headers["ETag"]


def test_get_wait_answers_304_after_n_seconds(
    transactional_db: None, web: str, tenant: Tenant
) -> None:
    job = submit_later(web, tenant)
    url = f"{web}/api/v1/jobs/{job['id']}"
    etag = httpx.get(url, headers=auth(tenant)).headers["ETag"]
    response = httpx.get(f"{url}?wait=1", headers=auth(tenant, **{"If-None-Match": etag}))
    assert response.status_code == 304
    assert response.headers["ETag"] == etag
    wait_for(lambda: waiters(tenant) == 0, timeout=10)


def test_get_wait_with_a_stale_etag_or_none_answers_at_once(
    transactional_db: None, web: str, tenant: Tenant
) -> None:
    job = submit_later(web, tenant)
    url = f"{web}/api/v1/jobs/{job['id']}?wait=60"
    # A wait of 60 s would outlast this client's timeout: answering at once is the only pass.
    stale = httpx.get(url, headers=auth(tenant, **{"If-None-Match": '"0"'}), timeout=10)
    assert stale.status_code == 200
    assert stale.json()["id"] == job["id"]
    bare = httpx.get(url, headers=auth(tenant), timeout=10)
    assert bare.status_code == 200


def test_many_waiters_share_one_worker_process(
    transactional_db: None, web: str, tenant: Tenant
) -> None:
    """200 long-polls on a web process with one worker: all wait at once, the worker still
    answers other requests meanwhile, and every waiter is answered when its job changes."""
    count = 200
    batch = httpx.post(
        f"{web}/api/v1/jobs/batch", json={"jobs": [LATER] * count}, headers=auth(tenant)
    )
    ids = [job["id"] for job in batch.json()["jobs"]]
    etags = {
        job_id: httpx.get(f"{web}/api/v1/jobs/{job_id}", headers=auth(tenant)).headers["ETag"]
        for job_id in ids
    }

    async def wait_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count + 10)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.get(
                        f"{web}/api/v1/jobs/{job_id}?wait=45",
                        headers=auth(tenant, **{"If-None-Match": etags[job_id]}),
                    )
                    for job_id in ids
                )
            )

    thread, result = in_background(lambda: asyncio.run(wait_all()))
    wait_for(lambda: waiters(tenant) == count, timeout=30)
    # The one worker is not held by the waiters: a plain request is answered meanwhile.
    assert httpx.get(f"{web}/api/v1/jobs/{ids[0]}", headers=auth(tenant)).status_code == 200
    with httpx.Client(headers=auth(tenant)) as client:
        for job_id in ids:
            assert client.post(f"{web}/api/v1/jobs/{job_id}/cancel").status_code == 200
    thread.join(60)
    responses = result["response"]
    assert [r.status_code for r in responses] == [200] * count
    assert {r.json()["status"] for r in responses} == {"canceled"}
    assert [r.json()["id"] for r in responses] == ids
    wait_for(lambda: waiters(tenant) == 0, timeout=10)


def test_waiting_on_another_clients_job_is_404(
    transactional_db: None, web: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    job = submit_later(web, tenant)
    response = httpx.get(
        f"{web}/api/v1/jobs/{job['id']}?wait=5",
        headers=auth(other_tenant, **{"If-None-Match": '"1"'}),
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert waiters(other_tenant) == 0


@pytest.mark.parametrize(
    "query",
    ["wait=0", "wait=61", "wait=abc", "wait=%00", "wait=99999999999999999999", "wait=-1",
     "wait=", "wait=1.5", "wait=5&wait=6"],
)  # fmt: skip
def test_bad_wait_query_is_400(
    transactional_db: None, web: str, tenant: Tenant, query: str
) -> None:
    job = submit_later(web, tenant)
    response = httpx.get(
        f"{web}/api/v1/jobs/{job['id']}?{query}", headers=auth(tenant, **{"If-None-Match": "*"})
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "prefer", ["wait=0", "wait=61", "wait=abc", "wait=99999999999", "wait=", "wait=1, wait=2"]
)
def test_bad_prefer_wait_is_400_and_submits_nothing(
    transactional_db: None, web: str, tenant: Tenant, prefer: str
) -> None:
    response = httpx.post(f"{web}/api/v1/jobs", json=LATER, headers=auth(tenant, Prefer=prefer))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert not tenant.client.jobs.exists()


def test_other_preferences_are_ignored(transactional_db: None, web: str, tenant: Tenant) -> None:
    response = httpx.post(
        f"{web}/api/v1/jobs", json=LATER, headers=auth(tenant, Prefer="return=minimal")
    )
    assert response.status_code == 202
    assert "Preference-Applied" not in response.headers


def test_waiters_are_bounded_per_client_and_per_process(
    transactional_db: None, tmp_path: Path, tenant: Tenant, other_tenant: Tenant
) -> None:
    process, base = start_web(
        tmp_path, workers=1, WAIT_MAX_PER_CLIENT="2", WAIT_MAX_PER_PROCESS="3"
    )
    try:
        jobs = {t: submit_later(base, t) for t in (tenant, other_tenant)}

        def long_poll(t: Tenant) -> Any:
            url = f"{base}/api/v1/jobs/{jobs[t]['id']}?wait=3"
            return httpx.get(url, headers=auth(t, **{"If-None-Match": '"1"'}), timeout=10)

        held = [in_background(lambda: long_poll(tenant)) for _ in range(2)]
        wait_for(lambda: waiters(tenant) == 2, timeout=10)
        over_client = long_poll(tenant)
        assert over_client.status_code == 429
        assert over_client.json()["error"]["code"] == "rate_limited"
        assert over_client.headers["Retry-After"] == "1"
        held.append(in_background(lambda: long_poll(other_tenant)))
        wait_for(lambda: waiters(other_tenant) == 1, timeout=10)
        over_process = long_poll(other_tenant)
        assert over_process.status_code == 503
        assert over_process.json()["error"]["code"] == "service_unavailable"
        for thread, result in held:
            thread.join(10)
            assert result["response"].status_code == 304
    finally:
        process.stop()


def test_a_waiter_whose_client_leaves_is_freed(
    transactional_db: None, web: str, tenant: Tenant
) -> None:
    job = submit_later(web, tenant)
    host, port = web.removeprefix("http://").split(":")
    request = (
        f"GET /api/v1/jobs/{job['id']}?wait=60 HTTP/1.1\r\nHost: {host}\r\n"
        f'Authorization: Bearer {tenant.api_key}\r\nIf-None-Match: "1"\r\n\r\n'
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request.encode())
        wait_for(lambda: waiters(tenant) == 1, timeout=10)
    # Closed long before its 60 s: its place is given back (as is its coroutine).
    wait_for(lambda: waiters(tenant) == 0, timeout=10)


def test_a_lost_wake_up_costs_one_recheck_not_the_whole_wait(
    transactional_db: None, tmp_path: Path, tenant: Tenant
) -> None:
    """The job's change is never published (its watch marker is gone, as after a Redis restart
    or a failed write-through): the waiter still answers, from its own re-check."""
    process, base = start_web(tmp_path, workers=1, WAIT_RECHECK_SECONDS="1")
    try:
        job = submit_later(base, tenant)
        url = f"{base}/api/v1/jobs/{job['id']}"
        etag = httpx.get(url, headers=auth(tenant)).headers["ETag"]
        thread, result = in_background(
            lambda: httpx.get(
                f"{url}?wait=60", headers=auth(tenant, **{"If-None-Match": etag}), timeout=70
            )
        )
        wait_for(lambda: waiters(tenant) == 1, timeout=10)
        entry = key(f"job:{tenant.client.pk}:{job['id']}")
        assert fast_cache().client.delete(f"{entry}:watched") == 1
        assert httpx.post(f"{url}/cancel", headers=auth(tenant)).status_code == 200
        # Answered by the re-check (about a second), long before the 60 s wait: a waiter that
        # relied on the message alone would still be waiting when the thread is joined.
        thread.join(20)
        assert not thread.is_alive()
        assert result["response"].status_code == 200
        assert result["response"].json()["status"] == "canceled"
    finally:
        process.stop()
