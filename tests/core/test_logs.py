"""Log lines: JSON shape, context, masking, and the one access line per request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from apps.core.access_log import access_log
from apps.core.context import bound_job, request_id_var
from apps.core.logs import JsonFormatter, PlainFormatter, mask_secrets
from tests.support.tenants import Tenant

API_KEY = "cvk_" + "A" * 43
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"


class _Job:
    def __init__(self, pk: str, request_id: str) -> None:
        self.pk, self.request_id, self.type = pk, request_id, "diagnostics.echo"


def _format(formatter: logging.Formatter, message: str, *args: Any, **extra: Any) -> str:
    record = logging.LogRecord("conveyor.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return formatter.format(record)


def test_mask_secrets_hides_keys_webhook_secrets_and_bearer_tokens() -> None:
    text = f"key={API_KEY} secret={WEBHOOK_SECRET} Authorization: Bearer abc.def-ghi"
    masked = mask_secrets(text)
    assert API_KEY not in masked
    assert WEBHOOK_SECRET not in masked
    assert "abc.def-ghi" not in masked
    assert masked == "key=cvk_*** secret=whsec_*** Authorization: Bearer ***"
    assert mask_secrets("nothing to hide here") == "nothing to hide here"


def test_json_line_has_fields_extras_and_the_request_id_from_context() -> None:
    token = request_id_var.set("req-42")
    try:
        line = _format(JsonFormatter(), "hello %s", "world", route="api/v1/jobs", status=201)
    finally:
        request_id_var.reset(token)
    data = json.loads(line)
    assert data["message"] == "hello world"
    assert data["level"] == "INFO"
    assert data["logger"] == "conveyor.test"
    assert data["time"].endswith("+00:00")
    assert (data["route"], data["status"], data["request_id"]) == ("api/v1/jobs", 201, "req-42")
    assert "\n" not in line


def test_json_line_in_a_job_carries_the_jobs_request_id_and_job_id() -> None:
    with bound_job(_Job("job-1", "submitted-by-req-7")):
        data = json.loads(_format(JsonFormatter(), "working"))
    assert (data["request_id"], data["job_id"]) == ("submitted-by-req-7", "job-1")
    assert "request_id" not in json.loads(_format(JsonFormatter(), "idle"))


def test_secrets_are_masked_in_messages_extras_and_tracebacks() -> None:
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "conveyor.test",
            logging.ERROR,
            __file__,
            1,
            "with %s",
            (WEBHOOK_SECRET,),
            sys.exc_info(),
        )
    record.header = f"Bearer {API_KEY}"
    for formatter in (JsonFormatter(), PlainFormatter()):
        line = formatter.format(record)
        assert API_KEY not in line
        assert WEBHOOK_SECRET not in line
        record.exc_text = None  # each formatter renders the traceback itself
    json.loads(JsonFormatter().format(record))


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    access_log.flush()  # lines of earlier tests
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("conveyor.access")
    access.addHandler(handler)
    yield stream
    access.removeHandler(handler)


def test_one_access_line_per_request_with_route_pattern_status_client_and_request_id(
    tenant: Tenant, access_lines: io.StringIO
) -> None:
    job_id = tenant.submit().json()["id"]
    access_log.flush()
    access_lines.truncate(0)
    access_lines.seek(0)
    response = tenant.get(f"/api/v1/jobs/{job_id}", HTTP_X_REQUEST_ID="poll-1")
    assert response.status_code == 200
    access_log.flush()
    lines = [json.loads(line) for line in access_lines.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["route"] == "api/v1/jobs/<str:job_id>"  # the pattern: no job id in it
    assert job_id not in access_lines.getvalue()
    assert (line["method"], line["status"]) == ("GET", 200)
    assert line["client_id"] == tenant.client.pk
    assert line["request_id"] == "poll-1" == response["X-Request-ID"]
    assert line["duration_ms"] >= 0


def test_access_line_of_an_unknown_path_and_an_anonymous_caller(
    anonymous: Any, access_lines: io.StringIO
) -> None:
    anonymous.get("/no/such/path?token=cvk_x")
    access_log.flush()
    line = json.loads(access_lines.getvalue().splitlines()[-1])
    assert (line["route"], line["status"], line["client_id"]) == ("unmatched", 404, None)
    assert "/no/such/path" not in access_lines.getvalue()


def test_access_lines_are_written_in_the_background_with_their_requests_time(
    anonymous: Any, access_lines: io.StringIO
) -> None:
    import time

    before = time.time()
    anonymous.get("/healthz")
    # The writer thread picks it up within its interval, without flush().
    deadline = time.monotonic() + 5
    while not access_lines.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    line = json.loads(access_lines.getvalue().splitlines()[-1])
    assert line["route"] == "healthz"
    from datetime import datetime

    written = datetime.fromisoformat(line["time"]).timestamp()
    assert before - 0.01 <= written <= time.time()


def test_a_full_queue_drops_the_oldest_lines_and_says_so(caplog: Any) -> None:
    from apps.core.access_log import AccessLog

    small = AccessLog(interval=3600, max_pending=2)
    for status in (200, 201, 202):
        small.add("GET", "healthz", status, 1.0, None, None)
    with caplog.at_level(logging.INFO, logger="conveyor.access"):
        small.flush()
    statuses = [r.status for r in caplog.records if hasattr(r, "status")]  # type: ignore[attr-defined]
    assert statuses == [201, 202]
    assert any("1 lines dropped" in r.getMessage() for r in caplog.records)
