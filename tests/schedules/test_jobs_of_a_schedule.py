"""GET /api/v1/jobs?schedule_id=…: the jobs a schedule fired, the client's own only; the
parameter in the OpenAPI document with its constraints, a malformed one 400."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

JOB = {"type": "diagnostics.echo", "input": {"message": "tick"}}


def schedule_of(tenant: Tenant, name: str) -> str:
    response = tenant.post(
        "/api/v1/schedules", {"name": name, "cron": "0 3 * * *", "job": JOB, "overlap": "allow"}
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def trigger(tenant: Tenant, schedule_id: str) -> str:
    response = tenant.post(f"/api/v1/schedules/{schedule_id}/trigger")
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [job["id"] for job in response.json()["results"]]


def test_lists_the_jobs_of_one_schedule_newest_first(tenant: Tenant) -> None:
    nightly, hourly = schedule_of(tenant, "nightly"), schedule_of(tenant, "hourly")
    first, second = trigger(tenant, nightly), trigger(tenant, nightly)
    trigger(tenant, hourly)
    tenant.submit()  # no schedule
    assert ids(tenant.get(f"/api/v1/jobs?schedule_id={nightly}")) == [second, first]
    assert ids(tenant.get(f"/api/v1/jobs?schedule_id={nightly.upper()}")) == [second, first]
    # With the other filters, and paginated like any list.
    page = tenant.get(f"/api/v1/jobs?schedule_id={nightly}&status=queued&limit=1")
    assert ids(page) == [second]
    assert ids(tenant.get(page.json()["next"])) == [first]
    assert ids(tenant.get(f"/api/v1/jobs?schedule_id={nightly}&type=other.type")) == []
    assert len(ids(tenant.get("/api/v1/jobs"))) == 4


def test_another_clients_schedule_lists_nothing(tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = schedule_of(other_tenant, "nightly")
    trigger(other_tenant, theirs)
    tenant.submit()
    assert ids(tenant.get(f"/api/v1/jobs?schedule_id={theirs}")) == []
    assert ids(tenant.get(f"/api/v1/jobs?schedule_id={uuid.uuid4()}")) == []
    assert len(ids(other_tenant.get(f"/api/v1/jobs?schedule_id={theirs}"))) == 1


def test_a_deleted_schedules_jobs_stay_listed(tenant: Tenant) -> None:
    nightly = schedule_of(tenant, "nightly")
    job = trigger(tenant, nightly)
    deleted = tenant.http.delete(f"/api/v1/schedules/{nightly}")
    assert deleted.status_code == 204
    assert ids(tenant.get(f"/api/v1/jobs?schedule_id={nightly}")) == [job]


ID = "0192d5e4-8c1a-7b2c-9d3e-4f5a6b7c8d9e"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("", "schedule_id"),
        ("nightly", "schedule_id"),
        (ID[:-1], "schedule_id"),
        (ID.replace("-", ""), "schedule_id"),  # uuid.UUID takes it, the document does not
        ("{" + ID + "}", "schedule_id"),
        ("urn:uuid:" + ID, "schedule_id"),
        (ID + "%0A", "schedule_id"),
        (f"{ID}&schedule_id={ID}", "schedule_id"),  # once
        (ID + "%00", "query"),  # the input guard's, before any view (apps/core/middleware.py)
        ("x" * 10_000, "query"),
    ],
)
def test_a_malformed_schedule_id_is_400(tenant: Tenant, value: str, field: str) -> None:
    error = assert_error(tenant.get(f"/api/v1/jobs?schedule_id={value}"), 400, "validation_error")
    assert set(error["details"]) == {field}


def test_the_document_states_the_parameter_and_its_constraints(anonymous: Any) -> None:
    listing = anonymous.get("/api/schema/").json()["paths"]["/api/v1/jobs"]["get"]
    [parameter] = [p for p in listing["parameters"] if p["name"] == "schedule_id"]
    assert parameter["in"] == "query"
    assert not parameter.get("required", False)
    schema = parameter["schema"]
    assert (schema["type"], schema["format"]) == ("string", "uuid")
    pattern = re.compile(schema["pattern"])
    assert pattern.search("0192d5e4-8c1a-7b2c-9d3e-4f5a6b7c8d9e")
    assert not pattern.search("0192d5e48c1a7b2c9d3e4f5a6b7c8d9e")
