"""The schedules API (API.md, "Schedules"): create, list, read, change, delete, run now;
validation in the one error shape; another client's schedule is 404."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import TestCase, override_settings

from apps.jobs.models import Job, JobStatus
from apps.schedules.models import Schedule
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

URL = "/api/v1/schedules"
JOB = {"type": "diagnostics.echo", "input": {"message": "nightly"}}


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly export", "cron": "30 2 * * *", "job": JOB, **fields}


def create(tenant: Tenant, **fields: Any) -> Any:
    return tenant.post(URL, body(**fields))


def patch(tenant: Tenant, schedule_id: str, data: Any) -> Any:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tenant.http.patch(f"{URL}/{schedule_id}", data, format="json")


def test_create_answers_201_with_the_schedule_and_its_next_tick(tenant: Tenant) -> None:
    response = create(tenant, timezone="Europe/Paris")
    assert response.status_code == 201, response.content
    schedule = response.json()
    assert response["Location"] == f"{URL}/{schedule['id']}"
    assert set(schedule) == {
        "id",
        "name",
        "cron",
        "timezone",
        "job",
        "enabled",
        "overlap",
        "next_run_at",
        "last_run_at",
        "last_job_id",
        "last_skipped_at",
        "last_skip_reason",
        "created_at",
    }
    assert schedule["timezone"] == "Europe/Paris"
    assert schedule["enabled"] is True
    assert schedule["overlap"] == "skip"
    assert schedule["job"] == JOB
    assert schedule["next_run_at"] is not None
    assert schedule["last_run_at"] is None
    assert schedule["last_job_id"] is None


def test_the_time_zone_defaults_to_utc(tenant: Tenant) -> None:
    assert create(tenant).json()["timezone"] == "UTC"


def test_a_disabled_schedule_has_no_next_tick(tenant: Tenant) -> None:
    assert create(tenant, enabled=False).json()["next_run_at"] is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"cron": "0 0 LW 1 */7,0#1"}, "cron"),  # never fires
        ({"cron": None}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"overlap": "queue"}, "overlap"),
        ({"enabled": "yes"}, "enabled"),
        ({"job": "echo"}, "job"),
        ({"job": {**JOB, "run_at": "2030-01-01T00:00:00Z"}}, "job.run_at"),
        ({"job": {**JOB, "delay_seconds": 5}}, "job.delay_seconds"),
        ({"job": {"type": "no.such.type"}}, "job.type"),
        ({"job": {**JOB, "max_attempts": 10_000}}, "job.max_attempts"),
        ({"job": {"type": "diagnostics.echo", "input": {}}}, "job.input.message"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    tenant: Tenant, fields: dict[str, Any], field: str
) -> None:
    error = assert_error(create(tenant, **fields), 400, "validation_error")
    assert field in error["details"], error["details"]
    assert not Schedule.objects.exists()


def test_missing_required_fields_are_named(tenant: Tenant) -> None:
    error = assert_error(tenant.post(URL, {}), 400, "validation_error")
    assert set(error["details"]) == {"name", "cron", "job"}


def test_a_name_is_unique_per_client(tenant: Tenant, other_tenant: Tenant) -> None:
    assert create(tenant).status_code == 201
    assert_error(create(tenant), 409, "already_exists")
    assert create(other_tenant).status_code == 201


@override_settings(SCHEDULES_MAX_PER_CLIENT=2)
def test_a_client_has_a_bounded_number_of_schedules(tenant: Tenant, make_tenant: Any) -> None:
    assert create(tenant, name="a").status_code == 201
    assert create(tenant, name="b").status_code == 201
    error = assert_error(create(tenant, name="c"), 409, "limit_reached")
    assert error["details"] == {"schedules": 2, "max_schedules": 2}
    unlimited = make_tenant("trusted", unlimited=True)
    for name in "abc":
        assert create(unlimited, name=name).status_code == 201


def test_list_pages_newest_first_with_a_cursor(tenant: Tenant, other_tenant: Tenant) -> None:
    ids = [create(tenant, name=f"s{i}").json()["id"] for i in range(5)]
    create(other_tenant, name="theirs")
    page = tenant.get(f"{URL}?limit=2").json()
    seen = [s["id"] for s in page["results"]]
    while page["next"]:
        page = tenant.get(page["next"]).json()
        seen += [s["id"] for s in page["results"]]
    assert seen == ids[::-1]


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "cursor=nope"])
def test_a_bad_list_query_is_400(tenant: Tenant, query: str) -> None:
    assert_error(tenant.get(f"{URL}?{query}"), 400, "validation_error")


def test_another_clients_schedule_is_404_everywhere(tenant: Tenant, other_tenant: Tenant) -> None:
    schedule_id = create(tenant).json()["id"]
    path = f"{URL}/{schedule_id}"
    assert_error(other_tenant.get(path), 404, "not_found")
    assert_error(patch(other_tenant, schedule_id, {"enabled": False}), 404, "not_found")
    assert_error(other_tenant.http.delete(path), 404, "not_found")
    assert_error(other_tenant.post(f"{path}/trigger"), 404, "not_found")
    assert_error(tenant.get(f"{URL}/not-a-uuid"), 404, "not_found")
    assert Schedule.objects.get(pk=schedule_id).enabled


def test_patch_changes_the_given_fields_and_retimes_on_cron(tenant: Tenant) -> None:
    created = create(tenant, cron="0 3 * * *").json()
    renamed = patch(tenant, created["id"], {"name": "renamed"}).json()
    assert renamed["name"] == "renamed"
    assert renamed["next_run_at"] == created["next_run_at"]
    retimed = patch(tenant, created["id"], {"cron": "15 4 * * *"}).json()
    assert retimed["cron"] == "15 4 * * *"
    assert retimed["next_run_at"].endswith("04:15:00.000000Z")
    paused = patch(tenant, created["id"], {"enabled": False}).json()
    assert paused["next_run_at"] is None
    resumed = patch(tenant, created["id"], {"enabled": True}).json()
    assert resumed["next_run_at"] == retimed["next_run_at"]


def test_patch_validates_like_create(tenant: Tenant) -> None:
    schedule_id = create(tenant).json()["id"]
    create(tenant, name="taken")
    assert_error(patch(tenant, schedule_id, {"cron": "nope"}), 400, "validation_error")
    assert_error(patch(tenant, schedule_id, {"timezone": "Nowhere"}), 400, "validation_error")
    assert_error(patch(tenant, schedule_id, {"name": "taken"}), 409, "already_exists")
    assert_error(patch(tenant, schedule_id, [1]), 400, "validation_error")
    assert Schedule.objects.get(pk=schedule_id).cron == "30 2 * * *"


def test_delete_removes_the_schedule_and_keeps_its_jobs(tenant: Tenant) -> None:
    schedule_id = create(tenant).json()["id"]
    job_id = tenant.post(f"{URL}/{schedule_id}/trigger").json()["id"]
    assert tenant.http.delete(f"{URL}/{schedule_id}").status_code == 204
    assert_error(tenant.get(f"{URL}/{schedule_id}"), 404, "not_found")
    job = tenant.get(f"/api/v1/jobs/{job_id}").json()
    assert job["schedule_id"] == schedule_id


def test_trigger_submits_the_job_now_marked_with_the_schedule(tenant: Tenant) -> None:
    created = create(tenant, enabled=False).json()
    response = tenant.post(f"{URL}/{created['id']}/trigger")
    assert response.status_code == 202, response.content
    job = response.json()
    assert response["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["type"] == "diagnostics.echo"
    assert job["input"]["message"] == "nightly"
    assert job["schedule_id"] == created["id"]
    schedule = tenant.get(f"{URL}/{created['id']}").json()
    assert schedule["last_job_id"] == job["id"]
    assert schedule["last_run_at"] is not None
    assert schedule["next_run_at"] is None  # still disabled


def test_trigger_honours_overlap_skip(tenant: Tenant) -> None:
    schedule_id = create(tenant).json()["id"]
    first = tenant.post(f"{URL}/{schedule_id}/trigger").json()
    error = assert_error(tenant.post(f"{URL}/{schedule_id}/trigger"), 409, "invalid_state")
    assert error["details"] == {"last_job_id": first["id"]}
    Job.objects.filter(pk=first["id"]).update(status=JobStatus.SUCCEEDED)
    assert tenant.post(f"{URL}/{schedule_id}/trigger").status_code == 202


def test_trigger_with_overlap_allow_runs_beside_the_previous_run(tenant: Tenant) -> None:
    schedule_id = create(tenant, overlap="allow").json()["id"]
    for _ in range(2):
        assert tenant.post(f"{URL}/{schedule_id}/trigger").status_code == 202
    assert Job.objects.filter(schedule_id=schedule_id).count() == 2


def test_trigger_goes_through_the_clients_quota(tenant: Tenant) -> None:
    tenant.client.max_active_jobs = 1
    tenant.client.save()
    schedule_id = create(tenant, overlap="allow").json()["id"]
    assert tenant.submit().status_code == 202
    assert_error(tenant.post(f"{URL}/{schedule_id}/trigger"), 429, "quota_exceeded")


def test_jobs_submitted_directly_have_no_schedule(tenant: Tenant) -> None:
    assert tenant.submit().json()["schedule_id"] is None


def test_webhook_payloads_carry_the_schedule_id(tenant: Tenant) -> None:
    from apps.jobs.services import job_cancel
    from apps.webhooks.models import WebhookDelivery
    from apps.webhooks.services import render

    job_body = {**JOB, "webhook_url": "http://127.0.0.1:9/hook", "webhook_events": ["job.canceled"]}
    schedule_id = create(tenant, job=job_body).json()["id"]
    job_id = tenant.post(f"{URL}/{schedule_id}/trigger").json()["id"]
    job_cancel(job=Job.objects.get(pk=job_id))
    delivery = WebhookDelivery.objects.get(job_id=job_id)
    payload = orjson.loads(render(delivery))
    assert payload["type"] == "job.canceled"
    assert payload["data"]["schedule_id"] == schedule_id
