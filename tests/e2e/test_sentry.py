"""Sentry end to end: the SDK's real transport posts envelopes to a local stand-in for Sentry's
ingest (tests/support/fake_sentry.py); the test reads what reached it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.broker import empty_test_broker
from tests.support.fake_sentry import FakeSentry
from tests.support.http import call
from tests.support.processes import ManagedProcess, start_web, start_worker, wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]

PASSWORD = "correct-horse-battery-staple"
WEBHOOK_SECRET = "whsec_dGhpcy1pcy1hLXdlYmhvb2stc2VjcmV0LTEyMzQ="


@pytest.fixture(scope="module")
def sentry() -> Iterator[FakeSentry]:
    server = FakeSentry().start()
    yield server
    server.stop()


def _sentry_env(sentry: FakeSentry) -> dict[str, str]:
    return {"SENTRY_DSN": sentry.dsn, "SENTRY_TRACES_SAMPLE_RATE": "0", "RELEASE": "test-sha"}


@pytest.fixture(
    scope="module",
    params=[True, False],
    ids=["with-request-instrumentation", "without-request-instrumentation"],
)
def web(
    request: pytest.FixtureRequest,
    sentry: FakeSentry,
    django_db_setup: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    # One gunicorn worker: one SDK transport, which sends events in the order they happened.
    process, base = start_web(
        tmp_path_factory.mktemp("sentry-web"),
        SENTRY_INSTRUMENT_REQUESTS=str(request.param).lower(),
        **_sentry_env(sentry),
    )
    yield base
    process.stop()


@pytest.fixture(scope="module")
def worker(
    sentry: FakeSentry,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    empty_test_broker()
    with django_db_blocker.unblock():
        process = start_worker(
            tmp_path_factory.mktemp("sentry-worker"), name="sentryworker", **_sentry_env(sentry)
        )
    yield process
    process.stop()


def events_for(sentry: FakeSentry, request_id: str) -> list[dict[str, Any]]:
    return [e for e in sentry.events() if e.get("tags", {}).get("request_id") == request_id]


def assert_no_secrets(raw: bytes, *secrets: str) -> None:
    for secret in secrets:
        assert secret.encode() not in raw, f"{secret!r} reached Sentry"


def test_a_bug_in_the_web_is_reported_with_the_request_id_and_4xx_are_not(
    transactional_db: None, tenant: Tenant, sentry: FakeSentry, web: str
) -> None:
    sentry.clear()
    key = tenant.api_key
    client_errors = {
        "bad-input": ("POST", "/api/v1/jobs", key, {"type": "no.such.type", "input": {}}),
        "bad-key": ("GET", "/api/v1/jobs", "cvk_" + "x" * 43, None),
        "missing": ("GET", f"/api/v1/jobs/{uuid.uuid4()}", key, None),
        "wrong-state": ("POST", f"/api/v1/jobs/{uuid.uuid4()}/cancel", key, None),
    }
    for request_id, (method, path, used_key, body) in client_errors.items():
        status, _, _ = call(
            web, method, path, key=used_key, body=body, headers={"X-Request-ID": request_id}
        )
        assert 400 <= status < 500

    request_id = f"bug-{uuid.uuid4().hex}"
    body = {"type": "testing.buggy_validator", "input": {"password": PASSWORD}}
    status, _, answer = call(
        web, "POST", "/api/v1/jobs", key=key, body=body, headers={"X-Request-ID": request_id}
    )
    assert status == 500
    assert json.loads(answer)["error"] == {
        "code": "internal_error",
        "message": "An internal error occurred.",
        "details": {},
        "request_id": request_id,
    }

    events = wait_for(lambda: events_for(sentry, request_id), timeout=10)
    assert len(events) == 1
    event = events[0]
    assert event["environment"] == "test"
    assert event["release"] == "test-sha"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["request"]["method"] == "POST"
    assert event["request"]["url"].endswith("/api/v1/jobs")
    assert event["request"]["headers"].get("Authorization") in (None, "[Filtered]")
    # The 4xx requests went first through the same transport: none of them made an event.
    assert {e.get("tags", {}).get("request_id") for e in sentry.events()} == {request_id}
    assert_no_secrets(sentry.raw(), key, PASSWORD)


def test_a_failing_job_is_reported_by_the_worker_with_the_submitting_request_id(
    transactional_db: None, tenant: Tenant, sentry: FakeSentry, worker: ManagedProcess
) -> None:
    request_id = f"job-{uuid.uuid4().hex}"
    body = {
        "type": "testing.leaky_failure",
        "input": {"password": PASSWORD, "note": f"signed with {WEBHOOK_SECRET}"},
    }
    response = tenant.post("/api/v1/jobs", body, HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    events = wait_for(lambda: events_for(sentry, request_id), timeout=20)
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["job_id"] == job_id
    assert event["tags"]["job_type"] == "testing.leaky_failure"
    assert event["environment"] == "test"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "[Filtered]" in event["exception"]["values"][-1]["value"]
    assert_no_secrets(sentry.raw(), PASSWORD, WEBHOOK_SECRET, tenant.api_key)
    # The worker's own log line of the failure is scrubbed the same way.
    assert PASSWORD not in worker.output()
    assert WEBHOOK_SECRET not in worker.output()
