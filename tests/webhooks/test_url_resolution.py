"""Resolving webhook URLs at submission is bounded in time (apps/core/urlguard.py).

The resolver function is replaced by a slow or counting one (it is the operating system's DNS
client, not a service of the test); everything else is the real request path.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from apps.core import urlguard
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.215.14"
IN_TIME = "The host could not be resolved in time; try again later."


@pytest.fixture(autouse=True)
def _guarded(settings: Any) -> Iterator[None]:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_RESOLVE_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_RESOLVE_BUDGET_SECONDS = 1.0
    urlguard.forget_resolutions()
    yield
    urlguard.forget_resolutions()


@pytest.fixture
def lookups(monkeypatch: Any) -> Iterator[Counter[str]]:
    """Counts lookups per host; hosts named slow-* hang (until the test ends), nx-* do not
    resolve, the others resolve to a public address."""
    calls: Counter[str] = Counter()
    release = threading.Event()
    lock = threading.Lock()

    def getaddrinfo(host: str) -> list[str]:
        with lock:
            calls[host] += 1
        if host.startswith("slow-"):
            release.wait(30)
            return [PUBLIC]
        if host.startswith("nx-"):
            return []
        return [PUBLIC]

    monkeypatch.setattr(urlguard, "_getaddrinfo", getaddrinfo)
    yield calls
    release.set()


def batch(tenant: Tenant, urls: list[str]) -> Any:
    jobs = [
        {"type": "diagnostics.echo", "input": {"message": "m"}, "webhook_url": url} for url in urls
    ]
    return tenant.post("/api/v1/jobs/batch", {"jobs": jobs})


def test_a_host_that_does_not_answer_in_time_is_a_validation_error(
    tenant: Tenant, lookups: Counter[str]
) -> None:
    started = time.monotonic()
    response = tenant.submit(webhook_url="https://slow-1.example/hook")
    took = time.monotonic() - started
    error = assert_error(response, 400, "validation_error")
    assert error["details"]["webhook_url"] == [IN_TIME]
    assert took < 0.5 + 2.0, took


def test_a_host_that_does_not_resolve_is_refused(tenant: Tenant, lookups: Counter[str]) -> None:
    error = assert_error(
        tenant.submit(webhook_url="https://nx-1.example/hook"), 400, "validation_error"
    )
    assert error["details"]["webhook_url"] == ["The host does not resolve."]


def test_a_batch_of_1000_slow_hosts_answers_within_the_budget(
    tenant: Tenant, lookups: Counter[str]
) -> None:
    urls = [f"https://slow-{i}.example/hook" for i in range(1000)]
    started = time.monotonic()
    response = batch(tenant, urls)
    took = time.monotonic() - started
    error = assert_error(response, 400, "validation_error")
    assert error["details"]["jobs.0.webhook_url"] == [IN_TIME]
    assert error["details"]["jobs.999.webhook_url"] == [IN_TIME]
    print(f"batch of 1000 unresolvable hosts answered in {took:.2f} s")
    # Budget 1 s; validating 1000 jobs on a busy 2-core machine adds a few seconds at most.
    assert took < 1.0 + 10.0, took
    assert sum(lookups.values()) <= 1000
    assert max(lookups.values()) == 1


def test_a_batch_resolves_each_distinct_host_once(tenant: Tenant, lookups: Counter[str]) -> None:
    urls = [f"https://host-{i % 10}.example/hook/{i}" for i in range(300)]
    response = batch(tenant, urls)
    assert response.status_code == 202, response.content
    assert lookups == Counter({f"host-{i}.example": 1 for i in range(10)})
    # Answers are remembered for a while: the next submission does not look up again.
    assert tenant.submit(webhook_url="https://host-3.example/again").status_code == 202
    assert lookups["host-3.example"] == 1


def test_one_slow_host_in_a_batch_fails_only_its_job(tenant: Tenant, lookups: Counter[str]) -> None:
    urls = ["https://fine.example/hook", "https://slow-x.example/hook", "https://nx-y.example/h"]
    error = assert_error(batch(tenant, urls), 400, "validation_error")
    assert error["details"] == {
        "jobs.1.webhook_url": [IN_TIME],
        "jobs.2.webhook_url": ["The host does not resolve."],
    }


def test_a_timeout_is_not_remembered(tenant: Tenant, lookups: Counter[str]) -> None:
    assert tenant.submit(webhook_url="https://slow-2.example/hook").status_code == 400
    assert tenant.submit(webhook_url="https://slow-2.example/hook").status_code == 400
    assert lookups["slow-2.example"] == 2


def test_literal_addresses_need_no_lookup(tenant: Tenant, lookups: Counter[str]) -> None:
    assert tenant.submit(webhook_url=f"https://{PUBLIC}/hook").status_code == 202
    error = assert_error(tenant.submit(webhook_url="https://10.0.0.1/h"), 400, "validation_error")
    assert "private" in error["details"]["webhook_url"][0]
    assert not lookups


def test_hanging_lookups_cannot_pile_up_threads(tenant: Tenant, lookups: Counter[str]) -> None:
    """Past the process's limit of lookup threads, a lookup is refused at once, not queued."""
    for i in range(6):  # 6 batches x 16 hanging lookups > 64 threads
        batch(tenant, [f"https://slow-{i}-{j}.example/hook" for j in range(40)])
    started = time.monotonic()
    error = assert_error(
        tenant.submit(webhook_url="https://fresh.example/h"), 400, "validation_error"
    )
    assert error["details"]["webhook_url"] == [IN_TIME]
    assert time.monotonic() - started < 1.0
    assert "fresh.example" not in lookups
    assert sum(lookups.values()) <= 64
