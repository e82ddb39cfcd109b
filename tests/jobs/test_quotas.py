"""Per-client quotas on active jobs."""

from __future__ import annotations

from typing import Any

import pytest

from apps.jobs.models import Job, JobStatus
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def test_over_the_active_jobs_quota_is_429_with_retry_after(tenant: Tenant) -> None:
    tenant.client.max_active_jobs = 2
    tenant.client.save()
    assert tenant.submit().status_code == 202
    assert tenant.submit().status_code == 202
    response = tenant.submit()
    error = assert_error(response, 429, "quota_exceeded")
    assert int(response["Retry-After"]) >= 1
    assert error["details"] == {"active_jobs": 2, "max_active_jobs": 2}
    assert Job.objects.count() == 2


def test_finished_jobs_do_not_count(tenant: Tenant) -> None:
    tenant.client.max_active_jobs = 1
    tenant.client.save()
    first = tenant.submit().json()["id"]
    assert_error(tenant.submit(), 429, "quota_exceeded")
    Job.objects.filter(pk=first).update(status=JobStatus.SUCCEEDED)
    assert tenant.submit().status_code == 202


def test_a_batch_counts_every_job(tenant: Tenant) -> None:
    tenant.client.max_active_jobs = 3
    tenant.client.save()
    body = {"jobs": [{"type": "diagnostics.echo", "input": {"message": "x"}}] * 4}
    assert_error(tenant.post("/api/v1/jobs/batch", body), 429, "quota_exceeded")
    assert Job.objects.count() == 0


def test_retry_is_a_new_active_job(tenant: Tenant) -> None:
    tenant.client.max_active_jobs = 1
    tenant.client.save()
    first = tenant.submit().json()["id"]
    Job.objects.filter(pk=first).update(status=JobStatus.FAILED)
    second = tenant.submit().json()["id"]
    assert_error(tenant.post(f"/api/v1/jobs/{first}/retry"), 429, "quota_exceeded")
    assert Job.objects.get(pk=second).status == JobStatus.QUEUED


def test_unlimited_clients_have_no_quota(make_tenant: Any, settings: Any) -> None:
    settings.DEFAULT_MAX_ACTIVE_JOBS = 1
    tenant = make_tenant(unlimited=True)
    assert tenant.submit().status_code == 202
    assert tenant.submit().status_code == 202


def test_the_default_quota_applies_without_a_client_limit(tenant: Tenant, settings: Any) -> None:
    settings.DEFAULT_MAX_ACTIVE_JOBS = 1
    assert tenant.submit().status_code == 202
    assert_error(tenant.submit(), 429, "quota_exceeded")
