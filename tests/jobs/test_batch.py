"""POST /jobs/batch: up to 1000 jobs, all or nothing, in bulk."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job, JobEvent
from apps.jobs.submission import parse_submission
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def echo(message: str, **fields: Any) -> dict[str, Any]:
    return {"type": "diagnostics.echo", "input": {"message": message}, **fields}


def test_batch_stores_every_job_in_order(tenant: Tenant) -> None:
    response = tenant.post(
        "/api/v1/jobs/batch",
        {"jobs": [echo("a"), echo("b", priority="high"), echo("c", delay_seconds=60)]},
    )
    assert response.status_code == 202
    jobs = response.json()["jobs"]
    assert [j["input"]["message"] for j in jobs] == ["a", "b", "c"]
    assert [j["status"] for j in jobs] == ["queued", "queued", "scheduled"]
    assert jobs[1]["priority"] == "high"
    assert Job.objects.filter(client=tenant.client).count() == 3
    assert JobEvent.objects.count() == 3


def test_one_invalid_job_rejects_the_whole_batch(tenant: Tenant) -> None:
    response = tenant.post(
        "/api/v1/jobs/batch",
        {"jobs": [echo("a"), {"type": "no.such"}, echo("c", input={"message": ["not", "text"]})]},
    )
    error = assert_error(response, 400, "validation_error")
    assert "jobs.1.type" in error["details"]
    assert "jobs.2.input.message" in error["details"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize("body", [{}, {"jobs": []}, {"jobs": "many"}, [echo("a")]])
def test_malformed_batch_is_400(tenant: Tenant, body: Any) -> None:
    assert_error(tenant.post("/api/v1/jobs/batch", body), 400, "validation_error")


def test_more_than_1000_jobs_is_400(tenant: Tenant) -> None:
    response = tenant.post("/api/v1/jobs/batch", {"jobs": [echo("x")] * 1001})
    error = assert_error(response, 400, "validation_error")
    assert "jobs" in error["details"]
    assert Job.objects.count() == 0


def test_a_batch_of_1000_is_one_statement(make_tenant: Any, max_statements: Any) -> None:
    tenant = make_tenant(unlimited=True)  # no quota count
    tenant.get("/api/v1/jobs")
    with max_statements(1):  # one INSERT: jobs + events + wake-up
        response = tenant.post("/api/v1/jobs/batch", {"jobs": [echo(str(i)) for i in range(1000)]})
    assert response.status_code == 202
    assert Job.objects.count() == 1000
    assert JobEvent.objects.count() == 1000


def test_a_batch_wakes_its_pool_once(wakeups: Any, make_tenant: Any) -> None:
    tenant = make_tenant()
    response = tenant.post("/api/v1/jobs/batch", {"jobs": [echo(str(i)) for i in range(600)]})
    assert response.status_code == 202
    assert wakeups.received() == {"default": 600}  # the relay turns that into ≤ fan-out messages


def test_a_batch_stores_exactly_what_a_single_submission_stores(tenant: Tenant) -> None:
    """Batches travel to PostgreSQL as one JSON document of rows, single jobs as bound values:
    both must leave the same row behind, to the microsecond and the last metadata key."""
    rich = echo(
        'é ✓ "quoted" \\ back',
        priority="high",
        run_at=(timezone.now() + timedelta(days=2)).replace(microsecond=123456).isoformat(),
        max_attempts=5,
        timeout_seconds=17,
        retry_backoff_seconds=0.25,
        metadata={"customer": "ß", "n": "1"},
    )
    single = tenant.post("/api/v1/jobs", rich).json()
    # The rich job second: the batch's jobs after the first are built as copies (jobs_build).
    batch = tenant.post("/api/v1/jobs/batch", {"jobs": [echo("plain"), rich]}).json()["jobs"]
    skip = {"id", "created_at", "request_id", "version"}
    values = {
        job.pk: {f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields}
        for job in Job.objects.all()
    }
    from_single, from_batch = values[UUID(single["id"])], values[UUID(batch[1]["id"])]
    assert {k: v for k, v in from_batch.items() if k not in skip} == {
        k: v for k, v in from_single.items() if k not in skip
    }
    assert from_batch["run_at"].microsecond == 123456
    assert from_batch["metadata"] == {"customer": "ß", "n": "1"}
    assert values[UUID(batch[0]["id"])]["result"] is None  # SQL NULL, as Django stores None
    assert Job.objects.filter(result__isnull=True).count() == 3


def test_a_batch_builds_its_jobs_as_single_submissions_do(tenant: Tenant) -> None:
    """jobs_build copies the first job's attributes for the others: each job is what
    job_build makes of its submission, with its own id and no shared mutable value."""
    now = timezone.now()
    items = [
        echo("a"),
        echo("b", priority="high", metadata={"k": "v"}, concurrency_key="c", concurrency_limit=2),
        echo("c", run_at=(now + timedelta(hours=1)).isoformat(), webhook_events=["job.failed"]),
    ]
    submissions = [parse_submission(item, now=now) for item in items]
    built = services.jobs_build(client=tenant.client, submissions=submissions, request_id="r")
    skip = {"id", "created_at", "enqueued_at"}
    for job, submission in zip(built, submissions, strict=True):
        alone = services.job_build(client=tenant.client, submission=submission, request_id="r")
        assert job._state.adding
        assert job._state.db is None
        assert {
            f.attname: getattr(job, f.attname)
            for f in Job._meta.concrete_fields
            if f.attname not in skip
        } == {
            f.attname: getattr(alone, f.attname)
            for f in Job._meta.concrete_fields
            if f.attname not in skip
        }
    assert len({job.pk for job in built}) == 3
    assert built[0].depends_on is not built[1].depends_on
    assert (built[0].enqueued_at is None, built[2].enqueued_at) == (False, None)
