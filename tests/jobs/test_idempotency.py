"""Idempotency-Key on POST /jobs and /jobs/batch."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from apps.jobs.models import IdempotencyRecord, Job
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

BODY = {"type": "diagnostics.echo", "input": {"message": "once"}}


def test_same_key_and_body_replays_the_first_response(tenant: Tenant) -> None:
    first = tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first
    again = tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="order-42")
    assert again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again["Location"] == first["Location"]
    assert Job.objects.count() == 1
    assert first.json()["idempotency_key"] == "order-42"


def test_the_answer_and_its_replay_carry_the_jobs_etag(tenant: Tenant) -> None:
    # A client long-polls (If-None-Match) straight from the submission's answer.
    first = tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="etag-1")
    again = tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="etag-1")
    plain = tenant.post("/api/v1/jobs", {**BODY, "input": {"message": "no key"}})
    for response in (first, plain):
        job = Job.objects.get(pk=response.json()["id"])
        assert response["ETag"] == f'"{job.version}"'
    assert again["ETag"] == first["ETag"]
    unchanged = tenant.get(first["Location"], HTTP_IF_NONE_MATCH=first["ETag"])
    assert unchanged.status_code == 304


def test_key_order_in_the_body_does_not_matter(tenant: Tenant) -> None:
    tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="k")
    reordered = {"input": {"message": "once"}, "type": "diagnostics.echo"}
    assert tenant.post("/api/v1/jobs", reordered, HTTP_IDEMPOTENCY_KEY="k")["Idempotent-Replayed"]


def test_same_key_with_a_different_body_is_422(tenant: Tenant) -> None:
    tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="k")
    other = {"type": "diagnostics.echo", "input": {"message": "twice"}}
    assert_error(
        tenant.post("/api/v1/jobs", other, HTTP_IDEMPOTENCY_KEY="k"), 422, "idempotency_conflict"
    )
    assert Job.objects.count() == 1


def test_keys_are_scoped_per_client(tenant: Tenant, other_tenant: Tenant) -> None:
    tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="shared")
    response = other_tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="shared")
    assert "Idempotent-Replayed" not in response
    assert Job.objects.count() == 2


def test_a_failed_validation_is_not_stored(tenant: Tenant) -> None:
    bad = {"type": "diagnostics.echo", "input": {}}
    assert_error(
        tenant.post("/api/v1/jobs", bad, HTTP_IDEMPOTENCY_KEY="k"), 400, "validation_error"
    )
    assert tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="k").status_code == 202
    assert IdempotencyRecord.objects.count() == 1


def test_batches_are_idempotent_too(tenant: Tenant) -> None:
    batch = {"jobs": [BODY, BODY]}
    first = tenant.post("/api/v1/jobs/batch", batch, HTTP_IDEMPOTENCY_KEY="b1")
    again = tenant.post("/api/v1/jobs/batch", batch, HTTP_IDEMPOTENCY_KEY="b1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Job.objects.count() == 2
    # The same key on the other endpoint is another request: a conflict.
    assert_error(
        tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="b1"), 422, "idempotency_conflict"
    )


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_malformed_keys_are_400(tenant: Tenant, key: str) -> None:
    assert_error(
        tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY=key), 400, "validation_error"
    )


@pytest.mark.django_db(transaction=True)
def test_a_request_in_flight_makes_a_duplicate_409(make_tenant: Any) -> None:
    from apps.jobs import idempotency

    tenant = make_tenant()
    entered, release = threading.Event(), threading.Event()
    original = idempotency.run_once
    outcome: dict[str, Any] = {}

    def slow_run_once(**kwargs: Any) -> Any:
        produce = kwargs["produce"]

        def slow_produce() -> Any:
            entered.set()
            release.wait(10)
            return produce()

        return original(**{**kwargs, "produce": slow_produce})

    def first_request() -> None:
        idempotency.run_once = slow_run_once  # type: ignore[assignment]
        try:
            outcome["first"] = tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="slow")
        finally:
            connection.close()

    thread = threading.Thread(target=first_request)
    thread.start()
    try:
        assert entered.wait(10)
        idempotency.run_once = original
        second = tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="slow")
        assert_error(second, 409, "idempotency_in_progress")
    finally:
        release.set()
        thread.join(10)
        idempotency.run_once = original
    assert outcome["first"].status_code == 202
    third = tenant.post("/api/v1/jobs", BODY, HTTP_IDEMPOTENCY_KEY="slow")
    assert third["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1
