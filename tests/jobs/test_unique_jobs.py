"""Unique jobs (API.md, "Unique jobs"): a duplicate creates nothing and is answered 200 with
the existing job; keys are per client; windows count finished jobs too."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def finish(job_id: str) -> None:
    """Run the job to ``succeeded`` the way a worker records it."""
    started = services.job_start(job_id=job_id)
    assert started is not None
    assert services.job_succeed(job=started, result={}) is not None


def test_a_duplicate_is_answered_with_the_active_job(tenant: Tenant) -> None:
    first = tenant.submit(unique_key="reindex:42")
    assert first.status_code == 202
    assert "Conveyor-Duplicate" not in first
    again = tenant.submit(unique_key="reindex:42", input={"message": "other input"})
    assert again.status_code == 200
    assert again["Conveyor-Duplicate"] == "true"
    assert again["Location"] == f"/api/v1/jobs/{first.json()['id']}"
    assert again.json() == first.json()
    assert Job.objects.filter(client=tenant.client).count() == 1
    assert first.json()["unique_key"] == "reindex:42"


def test_a_finished_job_frees_its_key_unless_a_window_holds_it(tenant: Tenant) -> None:
    first = tenant.submit(unique_key="k").json()
    finish(first["id"])
    # Without a window only active jobs count: a new job.
    second = tenant.submit(unique_key="k")
    assert second.status_code == 202
    assert second.json()["id"] != first["id"]
    finish(second.json()["id"])
    # With a window, a job created within it counts, finished or not: the newest one.
    windowed = tenant.submit(unique_key="k", unique_for_seconds=60)
    assert windowed.status_code == 200
    assert windowed.json()["id"] == second.json()["id"]
    assert windowed.json()["status"] == "succeeded"
    # Outside the window it does not.
    Job.objects.filter(client=tenant.client).update(
        created_at=timezone.now() - timedelta(seconds=120)
    )
    assert tenant.submit(unique_key="k", unique_for_seconds=60).status_code == 202


def test_keys_are_per_client(tenant: Tenant, other_tenant: Tenant) -> None:
    mine = tenant.submit(unique_key="shared-name").json()
    theirs = other_tenant.submit(unique_key="shared-name")
    assert theirs.status_code == 202
    assert theirs.json()["id"] != mine["id"]


def test_jobs_without_a_key_are_never_duplicates(tenant: Tenant) -> None:
    assert tenant.submit().status_code == 202
    assert tenant.submit().status_code == 202
    assert Job.objects.filter(client=tenant.client).count() == 2


def test_a_batch_answers_each_duplicate_with_the_existing_job_in_its_place(
    tenant: Tenant,
) -> None:
    existing = tenant.submit(unique_key="a").json()
    item: dict[str, Any] = {"type": "diagnostics.echo", "input": {"message": "m"}}
    response = tenant.post(
        "/api/v1/jobs/batch",
        {
            "jobs": [
                {**item, "unique_key": "a"},
                {**item, "unique_key": "b"},
                {**item},
                {**item, "unique_key": "b"},
            ]
        },
    )
    assert response.status_code == 202
    jobs = response.json()["jobs"]
    assert jobs[0]["id"] == existing["id"]
    assert jobs[3]["id"] == jobs[1]["id"]
    assert len({job["id"] for job in jobs}) == 3
    assert Job.objects.filter(client=tenant.client).count() == 3  # "a", "b" and the plain one
    assert Job.objects.get(pk=jobs[1]["id"]).status == JobStatus.QUEUED


def test_a_duplicate_costs_no_quota(make_tenant: Any) -> None:
    tenant = make_tenant("tight")
    tenant.client.max_active_jobs = 1
    tenant.client.save()
    assert tenant.submit(unique_key="only").status_code == 202
    assert tenant.submit(unique_key="only").status_code == 200
    assert_error(tenant.submit(unique_key="another"), 429, "quota_exceeded")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"unique_key": None}, "unique_key"),
        ({"unique_key": ""}, "unique_key"),
        ({"unique_key": "x" * 201}, "unique_key"),
        ({"unique_key": "caf\u00e9"}, "unique_key"),
        ({"unique_key": "a\u0000b"}, "body"),  # NUL: refused for the whole body
        ({"unique_key": 7}, "unique_key"),
        ({"unique_key": "k", "unique_for_seconds": 0}, "unique_for_seconds"),
        ({"unique_key": "k", "unique_for_seconds": 2_592_001}, "unique_for_seconds"),
        ({"unique_key": "k", "unique_for_seconds": "60"}, "unique_for_seconds"),
        ({"unique_key": "k", "unique_for_seconds": None}, "unique_for_seconds"),
    ],
)
def test_bad_unique_options_are_refused(tenant: Tenant, fields: dict[str, Any], field: str) -> None:
    response = tenant.submit(**fields)
    assert_error(response, 400, "validation_error")
    assert field in response.json()["error"]["details"]
    assert not Job.objects.filter(client=tenant.client).exists()


def test_a_window_without_a_key_has_no_effect(tenant: Tenant) -> None:
    job = tenant.submit(unique_for_seconds=60).json()
    assert (job["unique_key"], job["unique_for_seconds"]) == (None, None)
    assert tenant.submit(unique_for_seconds=60).status_code == 202
