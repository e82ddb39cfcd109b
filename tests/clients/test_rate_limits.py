"""Rate limits: per client and endpoint group, per IP without a valid key, counted in Redis."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from apps.clients import selectors
from apps.clients.limits import client_counter
from apps.core.fastcache import fast_cache
from apps.jobs.models import Job
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

LIMITS = {"submit": "100/m", "read": "100/m", "list": "100/m", "anonymous": "100/m"}


@pytest.fixture
def limits(settings: Any) -> Callable[..., None]:
    def set_limits(**rates: str) -> None:
        settings.RATE_LIMITS = {**LIMITS, **rates}

    set_limits()
    return set_limits


def assert_rate_limited(response: Any, period: int = 60) -> dict[str, Any]:
    error = assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= period
    return error


def test_a_client_over_its_read_limit_gets_429_and_another_client_does_not(
    make_tenant: Callable[..., Tenant], limits: Callable[..., None]
) -> None:
    acme, globex = make_tenant(), make_tenant()
    job_id = acme.submit().json()["id"]
    other_id = globex.submit().json()["id"]
    limits(read="3/m")
    for _ in range(3):
        assert acme.get(f"/api/v1/jobs/{job_id}").status_code == 200
    error = assert_rate_limited(acme.get(f"/api/v1/jobs/{job_id}"))
    assert error["details"] == {"group": "read", "limit": 3}
    assert_rate_limited(acme.get("/api/v1/job-types"))  # the same group
    # One client's flood does not limit another.
    for _ in range(3):
        assert globex.get(f"/api/v1/jobs/{other_id}").status_code == 200


def test_each_endpoint_group_has_its_own_count(tenant: Tenant, limits: Callable[..., None]) -> None:
    job_id = tenant.submit().json()["id"]
    limits(list="2/m", read="2/m")
    assert tenant.get("/api/v1/jobs").status_code == 200
    assert tenant.get("/api/v1/jobs").status_code == 200
    assert_rate_limited(tenant.get("/api/v1/jobs"))
    assert tenant.get(f"/api/v1/jobs/{job_id}").status_code == 200
    assert tenant.submit().status_code == 202


def test_every_post_counts_as_submit_and_a_refused_one_writes_nothing(
    tenant: Tenant, limits: Callable[..., None]
) -> None:
    limits(submit="3/m")
    job_id = tenant.submit().json()["id"]
    assert tenant.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    assert tenant.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
    assert_rate_limited(tenant.submit())
    assert_rate_limited(tenant.post("/api/v1/jobs/batch", {"jobs": [{"type": "x"}]}))
    assert Job.objects.count() == 1


def test_retry_after_is_the_time_left_in_the_window(
    tenant: Tenant, limits: Callable[..., None]
) -> None:
    limits(list="1/10s")
    tenant.get("/api/v1/jobs")
    response = tenant.get("/api/v1/jobs")
    assert_rate_limited(response, period=10)


def test_a_clients_own_limit_replaces_the_default(
    make_tenant: Callable[..., Tenant], limits: Callable[..., None]
) -> None:
    strict, default = make_tenant(), make_tenant()
    strict.client.rate_limit_list = 1
    strict.client.save()  # as the admin does: the cached authentication entry is dropped
    limits(list="5/m")
    assert strict.get("/api/v1/jobs").status_code == 200
    error = assert_rate_limited(strict.get("/api/v1/jobs"))
    assert error["details"]["limit"] == 1
    for _ in range(5):
        assert default.get("/api/v1/jobs").status_code == 200
    assert_rate_limited(default.get("/api/v1/jobs"))


def test_unlimited_clients_are_not_even_counted(
    make_tenant: Callable[..., Tenant], limits: Callable[..., None]
) -> None:
    trusted = make_tenant(unlimited=True)
    job_id = trusted.submit().json()["id"]
    limits(read="1/m", submit="1/m")
    for _ in range(5):
        assert trusted.get(f"/api/v1/jobs/{job_id}").status_code == 200
        assert trusted.submit().status_code == 202
    counter, _ = client_counter("read", trusted.client.pk)
    assert fast_cache().get_many([counter]) == [None]


def test_floods_without_a_valid_key_are_limited_by_ip_before_the_database(
    anonymous: Any, limits: Callable[..., None], max_statements: Any
) -> None:
    limits(anonymous="3/m")

    def unknown_key() -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer cvk_{secrets.token_urlsafe(32)}"}

    assert_error(anonymous.get("/api/v1/jobs", **unknown_key()), 401, "not_authenticated")
    assert_error(anonymous.get("/api/v1/jobs"), 401, "not_authenticated")
    assert_error(anonymous.get("/api/v1/jobs", **unknown_key()), 401, "not_authenticated")
    with max_statements(0):  # refused before the key is looked up
        assert_rate_limited(anonymous.get("/api/v1/jobs", **unknown_key()))
        assert_rate_limited(anonymous.get("/api/v1/jobs"))
    # Another address is not affected.
    response = anonymous.get("/api/v1/jobs", REMOTE_ADDR="10.1.2.3", **unknown_key())
    assert_error(response, 401, "not_authenticated")


def test_a_valid_key_is_not_refused_for_its_ips_anonymous_flood(
    anonymous: Any, tenant: Tenant, limits: Callable[..., None]
) -> None:
    tenant.get("/api/v1/jobs")  # its authentication entry is in the cache
    limits(anonymous="1/m")
    for _ in range(3):
        anonymous.get("/api/v1/jobs")
    assert_rate_limited(anonymous.get("/api/v1/jobs"))
    # A process that has not seen the key yet counts it against the IP, but the cache vouches
    # for it: no database lookup to protect, so it goes through.
    selectors._owner_of.clear()
    selectors._recently_valid.clear()
    assert tenant.get("/api/v1/jobs").status_code == 200
    assert tenant.get("/api/v1/jobs").status_code == 200


def test_rate_limits_can_be_switched_off(
    tenant: Tenant, limits: Callable[..., None], settings: Any
) -> None:
    limits(list="1/m")
    settings.RATELIMIT_ENABLE = False
    for _ in range(3):
        assert tenant.get("/api/v1/jobs").status_code == 200


@pytest.mark.parametrize("rate", ["lots", "10/fortnight", "/m", ""])
def test_a_malformed_rate_is_refused_at_start(rate: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from apps.clients.limits import validate_rates

    with pytest.raises(ImproperlyConfigured):
        validate_rates({**LIMITS, "read": rate})
    with pytest.raises(ImproperlyConfigured):
        validate_rates({"submit": "1/s"})  # every group needs a rate


def test_a_limited_clients_poll_is_one_round_trip_to_redis_and_none_to_the_database(
    tenant: Tenant, limits: Callable[..., None], max_statements: Any, monkeypatch: Any
) -> None:
    job_id = tenant.submit().json()["id"]
    assert tenant.get(f"/api/v1/jobs/{job_id}").status_code == 200  # caches the job
    cache = fast_cache()
    calls: list[str] = []
    for name in ("run", "get_many", "set", "set_if_newer", "delete_many"):
        original = getattr(cache, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cache, name, counted)
    with max_statements(0):
        assert tenant.get(f"/api/v1/jobs/{job_id}").status_code == 200
    # Authentication, the status entry and the rate counter: one Lua call.
    assert calls == ["run"]
    monkeypatch.undo()
    counter, _ = client_counter("read", tenant.client.pk)
    assert fast_cache().get_many([counter]) == [b"2"]
