"""A revoked key, or a deactivated client's key, stops working everywhere within a stated bound:
``API_KEY_LOCAL_SECONDS`` (2 s) in every web process, even against a request that read the key
just before the revocation, and within a maintenance tick of the cache answering when the
revocation could not reach the cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from apps.clients import selectors
from apps.clients.keys import hash_api_key
from apps.clients.models import ApiClient, ApiKey
from apps.clients.selectors import auth_cache_key, client_for_api_key
from apps.clients.services import api_key_revoke, api_keys_refuse_in_cache, client_set_active
from apps.core.fastcache import fast_cache
from tests.support.http import call
from tests.support.processes import start_web
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_process_memory() -> Iterator[None]:
    selectors._recently_valid.clear()
    yield
    selectors._recently_valid.clear()


def _key(tenant: Tenant) -> ApiKey:
    return ApiKey.objects.get(key_hash=hash_api_key(tenant.api_key))


def test_a_fill_read_before_the_revocation_committed_cannot_undo_it(tenant: Tenant) -> None:
    key_hash = hash_api_key(tenant.api_key)
    # A request in another process read the key just before the revocation committed...
    stale = selectors._entry_from_database(key_hash)
    assert stale != selectors.refusal()
    with TestCase.captureOnCommitCallbacks(execute=True):
        api_key_revoke(key=_key(tenant))
    # ...and fills the cache just after: the refusal stays.
    assert fast_cache().add(auth_cache_key(key_hash), stale, 300) is False
    assert client_for_api_key(tenant.api_key) is None
    assert tenant.get("/api/v1/jobs").status_code == 401


def test_deactivating_a_client_refuses_all_its_keys_and_reactivating_restores_them(
    tenant: Tenant,
) -> None:
    assert tenant.get("/api/v1/jobs").status_code == 200
    with TestCase.captureOnCommitCallbacks(execute=True):
        client_set_active(client=tenant.client, active=False)
    assert tenant.get("/api/v1/jobs").status_code == 401
    assert tenant.submit().status_code == 401
    with TestCase.captureOnCommitCallbacks(execute=True):
        client_set_active(client=tenant.client, active=True)
    assert tenant.get("/api/v1/jobs").status_code == 200


@pytest.mark.parametrize("how", ["revoked", "deactivated"])
def test_the_maintenance_loop_refuses_a_key_whose_revocation_missed_the_cache(
    tenant: Tenant, how: str
) -> None:
    """The revocation committed while the cache was unreachable from its process (no signal
    here: a queryset update), and the cache still says "valid"."""
    key_hash = hash_api_key(tenant.api_key)
    assert client_for_api_key(tenant.api_key) is not None  # the cache holds "valid"
    if how == "revoked":
        ApiKey.objects.filter(key_hash=key_hash).update(revoked_at=timezone.now())
    else:
        ApiClient.objects.filter(pk=tenant.client.pk).update(is_active=False)
    selectors._recently_valid.clear()
    assert client_for_api_key(tenant.api_key) is not None  # stale: what the fix repairs
    assert api_keys_refuse_in_cache() >= 1
    selectors._recently_valid.clear()
    assert client_for_api_key(tenant.api_key) is None


def test_a_revocation_while_the_cache_is_unreachable_still_commits(
    tenant: Tenant, settings: Any
) -> None:
    from apps.core import fastcache

    fastcache.fast_cache.cache_clear()
    settings.REDIS_CACHE_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        with transaction.atomic(), TestCase.captureOnCommitCallbacks(execute=True):
            api_key_revoke(key=_key(tenant))
        assert _key(tenant).revoked_at is not None
        # Every process reads the database while the cache is down.
        assert client_for_api_key(tenant.api_key) is None
    finally:
        fastcache.fast_cache.cache_clear()


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["revoked", "deactivated"])
def test_a_revoked_key_is_refused_by_every_web_process_within_the_bound(
    tmp_path: Path, transactional_db: None, tenant: Tenant, how: str
) -> None:
    web, base = start_web(tmp_path, workers=3, RATELIMIT_ENABLE="false")
    try:

        def status() -> int:
            return call(base, "GET", "/api/v1/job-types", key=tenant.api_key)[0]

        # Every web process has the key in its memory and the cache holds it as valid.
        with ThreadPoolExecutor(max_workers=6) as pool:
            assert set(pool.map(lambda _: status(), range(60))) == {200}
        revoked_at = time.monotonic()
        if how == "revoked":
            api_key_revoke(key=_key(tenant))
        else:
            client_set_active(client=tenant.client, active=False)
        bound = settings.API_KEY_LOCAL_SECONDS
        # Until the bound passes some processes may still answer 200; from then on none may.
        time.sleep(max(0.0, revoked_at + bound - time.monotonic()))
        slack = 1.0  # a request in flight at the bound, on a busy machine
        time.sleep(slack)
        with ThreadPoolExecutor(max_workers=6) as pool:
            assert set(pool.map(lambda _: status(), range(120))) == {401}
    finally:
        web.stop()
