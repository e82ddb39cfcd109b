"""What config/sentry.py lets into an event (the SDK's transport is tested in tests/e2e)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rest_framework.exceptions import NotFound as DRFNotFound

from apps.core import errors
from apps.core.context import bound_job, request_id_var
from apps.core.logs import sensitive_strings
from config.sentry import before_send, is_operational

API_KEY = "cvk_" + "k" * 43
WEBHOOK_SECRET = "whsec_" + "s" * 32


class _Job:
    pk, type, request_id = "job-9", "testing.leaky_failure", "req-from-submission"
    input = {"password": "correct horse battery", "note": "fine"}


def _hint(exc: BaseException) -> dict[str, Any]:
    try:
        raise exc
    except BaseException:
        return {"exc_info": sys.exc_info()}


def test_client_errors_are_not_reported_and_bugs_are() -> None:
    for exc in (errors.ValidationFailed(), errors.NotFound(), errors.RateLimited(), DRFNotFound()):
        assert is_operational(exc)
        assert before_send({"message": "x"}, _hint(exc)) is None
    for exc in (errors.ServiceUnavailable(), errors.ConveyorError(), RuntimeError("bug")):
        assert not is_operational(exc)
        assert before_send({"message": "x"}, _hint(exc)) is not None


def test_events_are_tagged_with_the_request_id() -> None:
    token = request_id_var.set("req-123")
    try:
        event = before_send({"tags": {"existing": "kept"}}, {})
    finally:
        request_id_var.reset(token)
    assert event["tags"] == {"existing": "kept", "request_id": "req-123"}


def test_request_secrets_and_bodies_are_dropped() -> None:
    event = {
        "request": {
            "headers": {"Authorization": f"Bearer {API_KEY}", "Cookie": "a=b", "Accept": "*/*"},
            "cookies": {"sessionid": "abc"},
            "data": {"input": {"password": "pw"}},
            "query_string": f"key={API_KEY}",
        },
        "exception": {"values": [{"value": f"leaked {API_KEY} and {WEBHOOK_SECRET}"}]},
        "breadcrumbs": {"values": [{"message": f"Authorization: Bearer {API_KEY}"}]},
    }
    scrubbed = before_send(event, {})
    text = json.dumps(scrubbed)
    assert API_KEY not in text
    assert WEBHOOK_SECRET not in text
    assert "sessionid" not in text
    assert "password" not in text
    assert scrubbed["request"]["headers"]["Accept"] == "*/*"
    assert scrubbed["request"]["headers"]["Authorization"] == "[Filtered]"


def test_a_running_jobs_sensitive_input_values_are_replaced_everywhere() -> None:
    job = _Job()
    sensitive = sensitive_strings(job.input, {"password"})
    assert sensitive == ("correct horse battery",)
    event = {"exception": {"values": [{"value": "login failed for correct horse battery"}]}}
    with bound_job(job, sensitive):
        scrubbed = before_send(event, {})
    assert "correct horse battery" not in json.dumps(scrubbed)
    assert scrubbed["tags"]["job_id"] == "job-9"
    assert scrubbed["tags"]["request_id"] == "req-from-submission"


def test_sensitive_strings_take_nested_values_and_skip_tiny_ones() -> None:
    data = {"secret": {"a": ["long-enough", 12345], "b": "x"}, "other": "visible"}
    assert set(sensitive_strings(data, {"secret"})) == {"long-enough", "12345"}
    assert sensitive_strings("not a dict", {"secret"}) == ()
