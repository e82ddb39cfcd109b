"""The jobs API: submission, status, list, cancel, retry, job types, tenant isolation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from apps.jobs.models import Job, JobEvent, JobStatus
from tests.support.errors import assert_error
from tests.support.job_fields import JOB_FIELDS
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def test_submit_answers_202_with_location_and_the_job(tenant: Tenant) -> None:
    response = tenant.submit(metadata={"order": "42"}, priority="high")
    assert response.status_code == 202
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert response["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["type"] == "diagnostics.echo"
    assert job["queue"] == "default"
    assert job["priority"] == "high"
    assert job["attempts"] == 0
    assert job["max_attempts"] == 3
    assert job["timeout_seconds"] == 300
    assert job["metadata"] == {"order": "42"}
    assert job["input"]["message"] == "hello"
    assert job["input"]["sleep_seconds"] == 0  # defaults filled in
    assert job["created_at"].endswith("Z")
    assert job["webhook_events"] == ["job.succeeded", "job.failed", "job.canceled"]


def test_submit_writes_the_row_and_its_first_event(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    job = Job.objects.get(pk=job_id)
    assert job.client_id == tenant.client.pk
    assert job.status == JobStatus.QUEUED
    assert list(JobEvent.objects.filter(job=job).values_list("from_status", "to_status")) == [
        ("", "queued")
    ]


def test_submission_wakes_its_pool_after_commit(wakeups: Any, make_tenant: Any) -> None:
    tenant = make_tenant()
    assert tenant.submit().status_code == 202
    assert wakeups.received() == {"default": 1}


def test_a_scheduled_submission_wakes_nobody(wakeups: Any, make_tenant: Any) -> None:
    tenant = make_tenant()
    assert tenant.submit(delay_seconds=60).status_code == 202
    assert wakeups.received() == {}


def test_no_wake_up_for_a_submission_that_rolls_back(wakeups: Any, make_tenant: Any) -> None:
    from django.db import transaction

    from apps.jobs import services

    tenant = make_tenant()
    with transaction.atomic():
        services.job_submit(
            client=tenant.client, data={"type": "diagnostics.echo", "input": {"message": "x"}}
        )
        transaction.set_rollback(True)
    assert wakeups.received() == {}
    assert Job.objects.count() == 0


def test_invalid_submission_writes_nothing(tenant: Tenant) -> None:
    tenant.submit(input={"message": 1, "fail_times": 1000})
    assert Job.objects.count() == 0
    assert JobEvent.objects.count() == 0


def test_submission_limits_are_capped_by_the_type(tenant: Tenant) -> None:
    error = assert_error(
        tenant.submit(timeout_seconds=10**6, max_attempts=0), 400, "validation_error"
    )
    assert set(error["details"]) == {"timeout_seconds", "max_attempts"}
    job = tenant.submit(timeout_seconds=30, max_attempts=5).json()
    assert (job["timeout_seconds"], job["max_attempts"]) == (30, 5)


def test_scheduled_submission_is_scheduled(tenant: Tenant) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    job = tenant.submit(run_at=run_at.isoformat()).json()
    assert job["status"] == "scheduled"
    assert datetime.fromisoformat(job["run_at"]) == run_at.replace(microsecond=run_at.microsecond)
    delayed = tenant.submit(delay_seconds=30).json()
    assert delayed["status"] == "scheduled"


def test_run_at_and_delay_together_are_refused(tenant: Tenant) -> None:
    response = tenant.submit(run_at=datetime.now(UTC).isoformat(), delay_seconds=5)
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", "urgent"),
        ("metadata", {"k": 5}),
        ("metadata", {"bad key!": "v"}),
        ("metadata", "labels"),
        ("webhook_url", "ftp://example.com/hook"),
        ("webhook_events", ["job.exploded"]),
        ("run_at", "tomorrow"),
        ("run_at", "2030-01-01T00:00:00"),
        ("delay_seconds", -5),
        ("max_attempts", "3"),
        ("unknown_field", 1),
        # An optional field is left out or has its type: null is not "absent".
        ("metadata", None),
        ("metadata", False),
        ("webhook_events", None),
        ("delay_seconds", None),
        ("max_attempts", None),
        ("retry_backoff_seconds", None),
    ],
)
def test_bad_envelope_fields_are_400(tenant: Tenant, field: str, value: Any) -> None:
    error = assert_error(tenant.submit(**{field: value}), 400, "validation_error")
    assert any(key.startswith(field) for key in error["details"]), error


def test_get_returns_the_job_with_etag_and_304(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    response = tenant.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["id"] == job_id
    assert response["Cache-Control"] == "private, no-cache"
    etag = response["ETag"]
    not_modified = tenant.get(f"/api/v1/jobs/{job_id}", HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    tenant.post(f"/api/v1/jobs/{job_id}/cancel")
    changed = tenant.get(f"/api/v1/jobs/{job_id}", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag


def test_another_clients_job_is_404_everywhere(tenant: Tenant, other_tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    assert_error(other_tenant.get(f"/api/v1/jobs/{job_id}"), 404, "not_found")
    assert_error(other_tenant.post(f"/api/v1/jobs/{job_id}/cancel"), 404, "not_found")
    assert_error(other_tenant.post(f"/api/v1/jobs/{job_id}/retry"), 404, "not_found")
    assert other_tenant.get("/api/v1/jobs").json()["results"] == []
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED


def test_cancel_of_a_queued_job_is_immediate(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    response = tenant.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "canceled"
    assert body["finished_at"] is not None
    events = JobEvent.objects.filter(job_id=job_id).values_list("from_status", "to_status")
    assert list(events) == [("", "queued"), ("queued", "canceled")]


def test_cancel_of_a_running_job_requests_it(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.RUNNING, attempts=1)
    response = tenant.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True
    again = tenant.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 202


def test_retry_of_a_failed_job_starts_over(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.FAILED, attempts=3, error={"code": "x", "message": "y"}
    )
    response = tenant.post(f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["attempts"], body["error"]) == ("queued", 0, None)


def test_job_types_lists_echo_with_its_schema(tenant: Tenant) -> None:
    response = tenant.get("/api/v1/job-types")
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()["results"]}
    echo = types["diagnostics.echo"]
    assert echo["queue"] == "default"
    assert echo["timeout_seconds"] == 300
    assert echo["max_attempts"] == 3
    schema = echo["input_schema"]
    assert schema["required"] == ["message"]
    assert schema["properties"]["message"] == {"type": "string", "maxLength": 10000}
    assert schema["properties"]["sleep_seconds"]["maximum"] == 600
    assert schema["properties"]["fail_permanently"]["type"] == "boolean"
    assert schema["additionalProperties"] is False


# --- List -----------------------------------------------------------------------------------


def _ids(page: dict[str, Any]) -> list[str]:
    return [job["id"] for job in page["results"]]


def test_list_is_newest_first_and_paginates_with_a_cursor(tenant: Tenant) -> None:
    submitted = [tenant.submit(input={"message": str(i)}).json()["id"] for i in range(7)]
    seen: list[str] = []
    url: str | None = "/api/v1/jobs?limit=3"
    while url:
        page = tenant.get(url).json()
        seen.extend(_ids(page))
        url = page["next"]
    assert seen == list(reversed(submitted))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("message", 5),
        ("fail_times", "3"),
        ("sleep_seconds", "1"),
        ("fail_permanently", "true"),
        ("fail_permanently", 1),
    ],
)
def test_input_values_keep_their_json_types(tenant: Tenant, name: str, value: Any) -> None:
    # DRF's fields would coerce each of these; the published input schema does not allow them.
    response = tenant.submit(input={"message": "m", name: value})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {f"input.{name}"}


def test_integral_numbers_count_as_integers(tenant: Tenant) -> None:
    # 3.0 is an integer in JSON Schema, as in the OpenAPI document.
    job = tenant.submit(max_attempts=3.0, input={"message": "m", "fail_times": 2.0}).json()
    assert (job["max_attempts"], job["input"]["fail_times"]) == (3, 2)


def test_list_filters(tenant: Tenant) -> None:
    a = tenant.submit(metadata={"team": "red"}).json()["id"]
    b = tenant.submit(metadata={"team": "blue"}).json()["id"]
    tenant.post(f"/api/v1/jobs/{b}/cancel")
    assert _ids(tenant.get("/api/v1/jobs?status=canceled").json()) == [b]
    assert _ids(tenant.get("/api/v1/jobs?status=queued,canceled").json()) == [b, a]
    assert _ids(tenant.get("/api/v1/jobs?metadata[team]=red").json()) == [a]
    assert _ids(tenant.get("/api/v1/jobs?type=diagnostics.echo&queue=default").json()) == [b, a]
    assert _ids(tenant.get("/api/v1/jobs?type=other.type").json()) == []
    created = Job.objects.get(pk=b).created_at
    after = (created - timedelta(milliseconds=1)).isoformat()
    assert _ids(tenant.http.get("/api/v1/jobs", {"created_after": after}).json()) == [b]
    before = created.isoformat()
    assert _ids(tenant.http.get("/api/v1/jobs", {"created_before": before}).json()) == [a]


@pytest.mark.parametrize(
    "query",
    [
        "status=done",
        "status=",
        "status=queued,,canceled",
        "type=Diagnostics.Echo",
        "type=diagnostics.echo,",
        "queue=default&queue=",
        "queue=no%20spaces",
        "metadata[]=v",
        "metadata=v",
        "metadata[team]=red&metadata[team]=blue",
        "limit=0",
        "limit=1000",
        "limit=5&limit=6",
        "created_after=yesterday",
        "cursor=%%%",
    ],
)
def test_bad_list_query_is_400(tenant: Tenant, query: str) -> None:
    assert_error(tenant.get(f"/api/v1/jobs?{query}"), 400, "validation_error")


@pytest.mark.django_db(transaction=True)
def test_list_pagination_is_stable_under_concurrent_inserts(tenant: Tenant) -> None:
    initial = {tenant.submit(input={"message": str(i)}).json()["id"] for i in range(30)}
    stop = threading.Event()

    def insert_more() -> None:
        while not stop.is_set():
            tenant.submit(input={"message": "late"})
        connection.close()

    inserter = threading.Thread(target=insert_more)
    inserter.start()
    try:
        seen: list[str] = []
        url: str | None = "/api/v1/jobs?limit=4"
        while url:
            page = tenant.get(url).json()
            seen.extend(_ids(page))
            url = page["next"]
    finally:
        stop.set()
        inserter.join()
    assert len(seen) == len(set(seen)), "a job appeared on two pages"
    assert initial <= set(seen), "a job that existed before the walk was skipped"


# --- Query counts on the hot paths -------------------------------------------------------------


def test_submit_query_count_is_bounded(tenant: Tenant, max_statements: Any) -> None:
    tenant.get("/api/v1/jobs")  # warm the key cache
    with max_statements(2):  # the bounded quota count; INSERT job + event + wake-up
        assert tenant.submit().status_code == 202


def test_an_unlimited_clients_submission_is_one_statement(
    make_tenant: Any, max_statements: Any
) -> None:
    tenant = make_tenant(unlimited=True)
    tenant.get("/api/v1/jobs")
    with max_statements(1):
        assert tenant.submit().status_code == 202


def test_get_is_served_from_the_status_cache_without_queries(
    tenant: Tenant, max_statements: Any
) -> None:
    job_id = tenant.submit().json()["id"]
    tenant.get(f"/api/v1/jobs/{job_id}")  # the first poll caches it
    tenant.get("/api/v1/jobs")  # the key's owner is now known to this process
    with max_statements(0):
        response = tenant.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["id"] == job_id


def test_get_of_an_uncached_job_reads_the_database_once(
    tenant: Tenant, max_statements: Any
) -> None:
    from apps.core.fastcache import fast_cache
    from apps.jobs.status_cache import job_cache_key

    job_id = tenant.submit().json()["id"]
    fast_cache().delete_many([job_cache_key(tenant.client.pk, job_id)])
    with max_statements(1):
        assert tenant.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    with max_statements(0):  # and it is cached again
        assert tenant.get(f"/api/v1/jobs/{job_id}").status_code == 200


def test_list_query_count_does_not_grow_with_the_page(tenant: Tenant, max_statements: Any) -> None:
    for i in range(25):
        tenant.submit(input={"message": str(i)})
    with max_statements(1):
        assert len(tenant.get("/api/v1/jobs?limit=25").json()["results"]) == 25
