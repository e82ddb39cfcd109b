"""The OpenAPI document: served, valid JSON, every endpoint and error documented."""

from __future__ import annotations

import re

import pytest

from apps.jobs.api.serializers import JobDoc
from tests.support.job_fields import JOB_FIELDS
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def test_schema_lists_every_endpoint_with_its_errors(anonymous) -> None:  # type: ignore[no-untyped-def]
    response = anonymous.get("/api/schema/")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/retry",
        "/api/v1/job-types",
    ]:
        assert path in paths, path
    submit = paths["/api/v1/jobs"]["post"]["responses"]
    assert {"202", "400", "401", "413", "415"} <= set(submit)
    assert "Error" in str(submit["400"])


def test_documented_job_fields_match_the_representation(tenant: Tenant) -> None:
    assert set(JobDoc().fields) == JOB_FIELDS
    assert set(tenant.submit().json()) == JOB_FIELDS


def test_interactive_docs_are_served(anonymous) -> None:  # type: ignore[no-untyped-def]
    response = anonymous.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_flow_control_fields_are_documented_with_their_constraints(anonymous) -> None:  # type: ignore[no-untyped-def]
    schemas = anonymous.get("/api/schema/").json()["components"]["schemas"]
    submit = schemas["JobSubmitDocRequest"]["properties"]
    key = submit["concurrency_key"]
    assert (key["minLength"], key["maxLength"]) == (1, 200)
    pattern = re.compile(key["pattern"].replace("\\u00", "\\x"))
    assert pattern.fullmatch("acct:42 ~")
    assert not pattern.fullmatch("tab\there")
    limit = submit["concurrency_limit"]
    assert (limit["minimum"], limit["maximum"]) == (1, 1000)
    job = schemas["JobDoc"]["properties"]
    assert job["concurrency_key"]["type"] == ["string", "null"]
    assert {"$ref": "#/components/schemas/NullEnum"} in job["wait_reason"]["oneOf"]
    assert schemas["WaitReasonEnum"]["enum"] == [
        "scheduled",
        "dependencies",
        "concurrency_limit",
        "client_limit",
        "rate_limit",
        "capacity",
    ]
