"""Bad client input on every endpoint: a 4xx in the one error shape, never a 500.

A table of inputs (NUL, lone surrogates, invalid UTF-8, deep nesting, huge numbers, over-long
values and headers, junk types) against the endpoints they reach, each with the status and
error code it must get. The in-process cases go through Django's test client; the ones that
only a real HTTP server can carry (raw bytes, headers past gunicorn's defaults) go through a
live gunicorn at the end.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.test import TestCase
from rest_framework.test import APIClient

from tests.support.errors import assert_error
from tests.support.processes import ManagedProcess, start_web
from tests.support.tenants import Tenant

ECHO = b'"type":"diagnostics.echo"'
JOB = "/api/v1/jobs/{id}"
ID_ENDPOINTS = [("GET", JOB), ("POST", JOB + "/cancel"), ("POST", JOB + "/retry")]
ID_ENDPOINTS.append(("GET", JOB + "/deliveries"))


def deep(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * levels + closer * levels


def deep_object(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


# name -> the submission body's raw bytes (a JSON object unless the name says otherwise).
BAD_BODIES: dict[str, bytes] = {
    "nul in input string": b"{" + ECHO + b',"input":{"message":"a\\u0000b"}}',
    "nul in input key": b"{" + ECHO + b',"input":{"mess\\u0000age":"a"}}',
    "nul in metadata value": b"{" + ECHO + b',"input":{},"metadata":{"k":"v\\u0000"}}',
    "nul in metadata key": b"{" + ECHO + b',"input":{},"metadata":{"k\\u0000":"v"}}',
    "nul in type": b'{"type":"diagnostics.echo\\u0000","input":{}}',
    "nul in webhook_url": b"{" + ECHO + b',"webhook_url":"http://127.0.0.1\\u0000/x"}',
    "raw nul byte": b"{" + ECHO + b',"input":{"message":"a\x00b"}}',
    "lone high surrogate": b"{" + ECHO + b',"input":{"message":"\\ud800"}}',
    "lone low surrogate": b"{" + ECHO + b',"input":{"message":"\\udc00x"}}',
    "surrogate in key": b"{" + ECHO + b',"metadata":{"\\ud83d":"v"}}',
    "invalid utf-8": b"{" + ECHO + b',"input":{"message":"\xff\xfe"}}',
    "overlong utf-8": b"{" + ECHO + b',"input":{"message":"\xc0\xaf"}}',
    "truncated utf-8": b"{" + ECHO + b',"input":{"message":"\xe2\x82"}}',
    "300-deep array in input": b"{" + ECHO + b',"input":{"x":' + deep(300) + b"}}",
    "300-deep object in input": b"{" + ECHO + b',"input":{"x":' + deep_object(300) + b"}}",
    "300-deep array in metadata": b"{" + ECHO + b',"metadata":{"k":' + deep(300) + b"}}",
    "2000-deep array": deep(2000),
    "1e400": b"{" + ECHO + b',"delay_seconds":1e400}',
    "-1e400": b"{" + ECHO + b',"input":{"sleep_seconds":-1e400}}',
    "NaN literal": b"{" + ECHO + b',"delay_seconds":NaN}',
    "Infinity literal": b"{" + ECHO + b',"delay_seconds":Infinity}',
    "10^30 integer": b"{" + ECHO + b',"max_attempts":1' + b"0" * 30 + b"}",
    "10^400 integer": b"{" + ECHO + b',"timeout_seconds":1' + b"0" * 400 + b"}",
    "1e308 delay": b"{" + ECHO + b',"delay_seconds":1e308}',
    "far-future run_at": b"{" + ECHO + b',"run_at":"9999-12-31T23:59:59-14:00"}',
    "run_at year 0": b"{" + ECHO + b',"run_at":"0000-01-01T00:00:00Z"}',
    "run_at without offset": b"{" + ECHO + b',"run_at":"2030-01-01T00:00:00"}',
    "malformed json": b"{" + ECHO + b",",
    "empty object": b"{}",
    "json array": b"[1,2]",
    "json string": b'"job"',
    "json null": b"null",
    "huge metadata value": b"{" + ECHO + b',"metadata":{"k":"' + b"v" * 5000 + b'"}}',
    "metadata value not a string": b"{" + ECHO + b',"metadata":{"k":{"a":1}}}',
    "unknown field": b"{" + ECHO + b',"priority":"urgent","nope":1}',
}


def batch_of(body: bytes) -> bytes:
    return b'{"jobs":[' + body + b"]}"


CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = []  # id, method, path, kwargs, ...
for name, body in BAD_BODIES.items():
    CASES.append((name, "POST", "/api/v1/jobs", {"data": body}, 400, "validation_error"))
    CASES.append(
        (name, "POST", "/api/v1/jobs/batch", {"data": batch_of(body)}, 400, "validation_error")
    )

_SUBMIT = b"{" + ECHO + b"}"
for path in ("/api/v1/jobs", "/api/v1/jobs/batch"):
    body = _SUBMIT if path == "/api/v1/jobs" else batch_of(_SUBMIT)
    for name, kwargs, status, code in [
        (
            "junk content type",
            {"data": body, "content_type": "text/x-junk"},
            415,
            "unsupported_media_type",
        ),
        (
            "form content type",
            {"data": b"type=x", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (
            "content type with nul",
            {"data": body, "content_type": "application/json\x00"},
            400,
            "validation_error",
        ),
        ("body over the limit", {"data": b" " * (1024 * 1024 + 1)}, 413, "payload_too_large"),
        (
            "idempotency key 256 chars",
            {"data": body, "HTTP_IDEMPOTENCY_KEY": "k" * 256},
            400,
            "validation_error",
        ),
        (
            "idempotency key with space",
            {"data": body, "HTTP_IDEMPOTENCY_KEY": "a b"},
            400,
            "validation_error",
        ),
        (
            "idempotency key non-ascii",
            {"data": body, "HTTP_IDEMPOTENCY_KEY": "clé"},
            400,
            "validation_error",
        ),
        (
            "idempotency key with nul",
            {"data": body, "HTTP_IDEMPOTENCY_KEY": "a\x00b"},
            400,
            "validation_error",
        ),
        (
            "idempotency key empty",
            {"data": body, "HTTP_IDEMPOTENCY_KEY": ""},
            400,
            "validation_error",
        ),
    ]:
        CASES.append((name, "POST", path, kwargs, status, code))
CASES.append(
    ("empty batch", "POST", "/api/v1/jobs/batch", {"data": b'{"jobs":[]}'}, 400, "validation_error")
)
CASES.append(
    (
        "batch not a list",
        "POST",
        "/api/v1/jobs/batch",
        {"data": b'{"jobs":{"a":1}}'},
        400,
        "validation_error",
    )
)

LIST_QUERIES = {
    "nul in type": "type=a%00b",
    "nul in queue": "queue=a%00b",
    "nul in status": "status=%00",
    "nul in metadata value": "metadata[k]=a%00b",
    "nul in metadata key": "metadata[k%00]=v",
    "nul in cursor": "cursor=%00",
    "nul in parameter name": "lim%00it=5",
    "invalid utf-8 in type": "type=%ff%fe",
    "invalid utf-8 in metadata": "metadata[k]=%c0%af",
    "lone surrogate (cesu-8) in queue": "queue=%ed%a0%80",
    "20 kB parameter": "type=" + "a" * 20_000,
    "type over 100 chars": "type=" + "t" * 101,
    "queue over 64 chars": "queue=" + "q" * 65,
    "metadata key with a space": "metadata[a%20b]=v",
    "metadata key over 64 chars": "metadata[" + "k" * 65 + "]=v",
    "metadata value over 500 chars": "metadata[k]=" + "v" * 501,
    "unknown status": "status=queued,bogus",
    "limit 0": "limit=0",
    "limit 201": "limit=201",
    "limit huge": "limit=" + "9" * 40,
    "limit negative": "limit=-1",
    "limit float": "limit=1.5",
    "limit empty": "limit=",
    "limit unicode digits": "limit=%D9%A5",
    "cursor junk": "cursor=not-a-cursor",
    "cursor with stray characters": "cursor=" + "A" * 22 + "!!",
    "cursor empty": "cursor=",
    "created_after date only": "created_after=2024-01-01",
    "created_after no offset": "created_after=2024-01-01T00:00:00",
    "created_after year 0": "created_after=0000-01-01T00:00:00Z",
    "created_after words": "created_after=yesterday",
    "created_after empty": "created_after=",
    "created_before basic format": "created_before=20240101T000000%2B0000",
    "created_before month 13": "created_before=2024-13-01T00:00:00Z",
    "1001 parameters": "&".join(f"p{i}=1" for i in range(1001)),
}
for name, query in LIST_QUERIES.items():
    CASES.append((name, "GET", f"/api/v1/jobs?{query}", {}, 400, "validation_error"))

for method, template in ID_ENDPOINTS:
    for name, job_id, status, code in [
        ("nul in id", "a%00b", 400, "validation_error"),
        ("nul after a real id", "{id}%00", 400, "validation_error"),
        ("9 kB id", "x" * 9000, 400, "validation_error"),
        ("not an id", "not-a-job", 404, "not_found"),
        ("unknown uuid", "01a22eed-afdc-7044-ab97-1e994ba18943", 404, "not_found"),
        ("another client's job", "{other}", 404, "not_found"),
    ]:
        CASES.append((name, method, template.replace("{id}", job_id), {}, status, code))

# --- Schedules: the body, the id in the path, the list's query ---------------------------------
SCHEDULE = "/api/v1/schedules/{sid}"
_CRON = b'"cron":"30 2 * * *"'


def schedule_of(job: bytes, fields: bytes = b'"name":"n",' + _CRON) -> bytes:
    return b"{" + fields + b',"job":' + job + b"}"


BAD_SCHEDULE_BODIES: dict[str, bytes] = {
    # Every bad job body as a schedule's job (a non-object "body" stays a broken document).
    **{f"job: {name}": schedule_of(body) for name, body in BAD_BODIES.items()},
    "job with run_at": schedule_of(b"{" + ECHO + b',"run_at":"2030-01-01T00:00:00Z"}'),
    "job with delay_seconds": schedule_of(b"{" + ECHO + b',"delay_seconds":5}'),
    "nul in name": schedule_of(b"{" + ECHO + b"}", b'"name":"a\\u0000b",' + _CRON),
    "control character in name": schedule_of(b"{" + ECHO + b"}", b'"name":"a\\u0007",' + _CRON),
    "name over 200 chars": schedule_of(
        b"{" + ECHO + b"}", b'"name":"' + b"n" * 201 + b'",' + _CRON
    ),
    "empty name": schedule_of(b"{" + ECHO + b"}", b'"name":"",' + _CRON),
    "name a number": schedule_of(b"{" + ECHO + b"}", b'"name":1e400,' + _CRON),
    "nul in cron": schedule_of(b"{" + ECHO + b"}", b'"name":"n","cron":"30 2 * * *\\u0000"'),
    "cron 61 minutes": schedule_of(b"{" + ECHO + b"}", b'"name":"n","cron":"61 * * * *"'),
    "cron six fields": schedule_of(b"{" + ECHO + b"}", b'"name":"n","cron":"0 30 2 * * *"'),
    "cron reversed range": schedule_of(b"{" + ECHO + b"}", b'"name":"n","cron":"5-3 * * * *"'),
    "cron 31 February": schedule_of(b"{" + ECHO + b"}", b'"name":"n","cron":"0 0 31 2 *"'),
    "cron 9 kB": schedule_of(b"{" + ECHO + b"}", b'"name":"n","cron":"' + b"1," * 4500 + b'1"'),
    "cron a number": schedule_of(b"{" + ECHO + b"}", b'"name":"n","cron":10'),
    "timezone unknown": b'{"name":"n",'
    + _CRON
    + b',"timezone":"Mars/Olympus","job":{'
    + ECHO
    + b"}}",
    "timezone with nul": b'{"name":"n",'
    + _CRON
    + b',"timezone":"UTC\\u0000","job":{'
    + ECHO
    + b"}}",
    "timezone a path": b'{"name":"n",'
    + _CRON
    + b',"timezone":"../../etc/passwd","job":{'
    + ECHO
    + b"}}",
    "timezone huge": b'{"name":"n",'
    + _CRON
    + b',"timezone":"'
    + b"Z" * 5000
    + b'","job":{'
    + ECHO
    + b"}}",
    "enabled 1e400": b'{"name":"n",' + _CRON + b',"enabled":1e400,"job":{' + ECHO + b"}}",
    "overlap 10^400": b'{"name":"n",'
    + _CRON
    + b',"overlap":1'
    + b"0" * 400
    + b',"job":{'
    + ECHO
    + b"}}",
    "300-deep object as job": schedule_of(deep_object(300)),
    "2000-deep array": deep(2000),
    "unknown field": b'{"name":"n",' + _CRON + b',"job":{' + ECHO + b'},"nope":1}',
}
for name, body in BAD_SCHEDULE_BODIES.items():
    CASES.append((name, "POST", "/api/v1/schedules", {"data": body}, 400, "validation_error"))
    CASES.append((name, "PATCH", SCHEDULE, {"data": body}, 400, "validation_error"))
CASES.append(
    (
        "required fields missing",
        "POST",
        "/api/v1/schedules",
        {"data": b"{}"},
        400,
        "validation_error",
    )
)
for method, path in [("POST", "/api/v1/schedules"), ("PATCH", SCHEDULE)]:
    CASES.append(
        (
            "junk content type",
            method,
            path,
            {"data": b"{}", "content_type": "text/x-junk"},
            415,
            "unsupported_media_type",
        )
    )
    CASES.append(
        (
            "body over the limit",
            method,
            path,
            {"data": b" " * (1024 * 1024 + 1)},
            413,
            "payload_too_large",
        )
    )
SCHEDULE_ID_ENDPOINTS = [
    ("GET", SCHEDULE),
    ("PATCH", SCHEDULE),
    ("DELETE", SCHEDULE),
    ("POST", SCHEDULE + "/trigger"),
]
for method, template in SCHEDULE_ID_ENDPOINTS:
    for name, schedule_id, status, code in [
        ("nul in id", "a%00b", 400, "validation_error"),
        ("nul after a real id", "{sid}%00", 400, "validation_error"),
        ("9 kB id", "x" * 9000, 400, "validation_error"),
        ("not an id", "not-a-schedule", 404, "not_found"),
        ("unknown uuid", "01a22eed-afdc-7044-ab97-1e994ba18943", 404, "not_found"),
        ("another client's schedule", "{other_sid}", 404, "not_found"),
    ]:
        kwargs = {"data": b'{"enabled":false}'} if method == "PATCH" else {}
        CASES.append((name, method, template.replace("{sid}", schedule_id), kwargs, status, code))
for name in ("limit 0", "limit 201", "limit huge", "limit float", "cursor junk", "cursor empty"):
    CASES.append(
        (name, "GET", f"/api/v1/schedules?{LIST_QUERIES[name]}", {}, 400, "validation_error")
    )
CASES.append(("nul in cursor", "GET", "/api/v1/schedules?cursor=%00", {}, 400, "validation_error"))

for method, path in [
    ("GET", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs/batch"),
    ("GET", "/api/v1/job-types"),
    ("GET", JOB),
    ("POST", JOB + "/cancel"),
    ("POST", JOB + "/retry"),
    ("GET", JOB + "/deliveries"),
    ("GET", "/api/v1/schedules"),
    ("POST", "/api/v1/schedules"),
    *SCHEDULE_ID_ENDPOINTS,
]:
    for name, kwargs, status, code in [
        ("9 kB header", {"HTTP_X_JUNK": "j" * 9000}, 431, "request_header_fields_too_large"),
        (
            "40 kB of headers",
            {f"HTTP_X_JUNK_{i}": "j" * 8000 for i in range(5)},
            431,
            "request_header_fields_too_large",
        ),
        ("nul in a header", {"HTTP_X_JUNK": "a\x00b"}, 400, "validation_error"),
        (
            "garbage bearer key",
            {"HTTP_AUTHORIZATION": "Bearer " + "\u2603" * 50},
            401,
            "not_authenticated",
        ),
        (
            "huge bearer key",
            {"HTTP_AUTHORIZATION": "Bearer " + "k" * 8000},
            401,
            "not_authenticated",
        ),
        ("basic auth", {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, 401, "not_authenticated"),
        ("no scheme", {"HTTP_AUTHORIZATION": "cvk_x"}, 401, "not_authenticated"),
    ]:
        CASES.append((name, method, path, kwargs, status, code))


def endpoint_of(method: str, path: str) -> str:
    bare = path.split("?", 1)[0]
    for collection in ("/api/v1/jobs/", "/api/v1/schedules/"):
        if bare.startswith(collection) and bare != "/api/v1/jobs/batch":
            tail = bare.removeprefix(collection).split("/", 1)
            bare = collection + "{id}" + ("/" + tail[1] if len(tail) > 1 else "")
    return f"{method} {bare}"


def case_counts() -> Counter[str]:
    return Counter(endpoint_of(method, path) for _, method, path, *_ in CASES)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [pytest.param(*case[1:], id=f"{case[1]} {case[2][:40]} {case[0]}") for case in CASES],
)
def test_bad_input_gets_a_4xx_in_the_error_shape(
    make_tenant: Any, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    tenant: Tenant = make_tenant()
    other: Tenant = make_tenant()
    job_id = tenant.submit().json()["id"]
    foreign_id = other.submit().json()["id"]
    path = path.replace("{id}", job_id).replace("{other}", foreign_id)
    if "{sid}" in path or "{other_sid}" in path:
        schedule = {"name": "s", "cron": "30 2 * * *", "job": {"type": "diagnostics.echo"}}
        schedule["job"]["input"] = {"message": "m"}
        own = tenant.post("/api/v1/schedules", schedule)
        theirs = other.post("/api/v1/schedules", schedule)
        path = path.replace("{sid}", own.json()["id"]).replace("{other_sid}", theirs.json()["id"])
    kwargs = dict(kwargs)
    # A case that sends its own Authorization header gets a client without the tenant's key.
    http = APIClient() if "HTTP_AUTHORIZATION" in kwargs else tenant.http
    with TestCase.captureOnCommitCallbacks(execute=True):
        if method == "GET":
            response = http.get(path, **kwargs)
        else:
            data = kwargs.pop("data", None)
            content_type = kwargs.pop("content_type", "application/json")
            send = (
                http.post if method == "POST" else http.patch if method == "PATCH" else http.delete
            )
            response = send(path, data=data, content_type=content_type, **kwargs)
    error = assert_error(response, status, code)
    assert error["message"]
    if status == 400 and code == "validation_error":
        assert error["details"], "a validation error names what is wrong"


def test_the_table_covers_every_endpoint() -> None:
    counts = case_counts()
    print(
        "bad-input cases per endpoint:", dict(sorted(counts.items())), "total", sum(counts.values())
    )
    assert set(counts) == {
        "GET /api/v1/jobs",
        "POST /api/v1/jobs",
        "POST /api/v1/jobs/batch",
        "GET /api/v1/job-types",
        "GET /api/v1/jobs/{id}",
        "POST /api/v1/jobs/{id}/cancel",
        "POST /api/v1/jobs/{id}/retry",
        "GET /api/v1/jobs/{id}/deliveries",
        "GET /api/v1/schedules",
        "POST /api/v1/schedules",
        "GET /api/v1/schedules/{id}",
        "PATCH /api/v1/schedules/{id}",
        "DELETE /api/v1/schedules/{id}",
        "POST /api/v1/schedules/{id}/trigger",
    }


@pytest.mark.django_db
def test_escaped_backslash_before_u0000_is_text_not_nul(tenant: Tenant) -> None:
    """The raw-bytes NUL check is only a pre-filter: ``"\\\\u0000"`` is six characters of text."""
    response = tenant.http.post(
        "/api/v1/jobs",
        data=b"{" + ECHO + b',"input":{"message":"\\\\u0000"}}',
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    assert response.json()["input"]["message"] == "\\u0000"


@pytest.mark.django_db
def test_nesting_up_to_the_limit_is_accepted(tenant: Tenant) -> None:
    depth = settings.JSON_MAX_DEPTH
    # The body object and metadata take two levels; the value fills the rest.
    body = b"{" + ECHO + b',"input":{"message":"' + b"[" * 500 + b'"},"metadata":{}}'
    assert (
        tenant.http.post("/api/v1/jobs", data=body, content_type="application/json").status_code
        == 202
    )
    too_deep = orjson.loads(deep(depth))
    response = tenant.post("/api/v1/jobs", {"type": "diagnostics.echo", "input": {"x": too_deep}})
    assert_error(response, 400, "validation_error")
    within = orjson.loads(deep(depth - 2))
    response = tenant.post("/api/v1/jobs", {"type": "diagnostics.echo", "input": {"x": within}})
    error = assert_error(response, 400, "validation_error")
    assert "input.x" in error["details"]  # refused by the type's schema, not for its depth


# --- Through a live gunicorn: what the test client cannot send --------------------------------


@pytest.fixture(scope="module")
def live(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process: ManagedProcess
    process, base = start_web(tmp_path_factory.mktemp("bad-inputs-web"), workers=1)
    yield base
    process.stop()


def raw_request(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value
        for name, value in (line.split(": ", 1) for line in lines[1:] if ": " in line)
    }
    if headers.get("transfer-encoding") == "chunked":
        decoded = b""
        while True:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, body = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    return int(lines[0].split()[1]), headers, body


def http(method: str, target: str, key: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"Authorization: Bearer {key}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


LIVE_CASES = [
    ("20 kB header", "GET", "/api/v1/jobs", b"", {"X_Junk": "j" * 20_000}, 431),
    ("20 kB header on submit", "POST", "/api/v1/jobs", b"{}", {"X_Junk": "j" * 20_000}, 431),
    (
        "60 kB of headers",
        "GET",
        "/api/v1/job-types",
        b"",
        {f"X_J{i}": "j" * 7000 for i in range(9)},
        431,
    ),
    ("20 kB query parameter", "GET", "/api/v1/jobs?type=" + "a" * 20_000, b"", {}, 400),
    ("20 kB path", "GET", "/api/v1/jobs/" + "a" * 20_000, b"", {}, 400),
    # Django re-percent-encodes invalid UTF-8 in a path (%FF%FE): no id can match, so 404.
    ("invalid utf-8 in the path", "GET", "/api/v1/jobs/%ff%fe", b"", {}, 404),
    ("nul in the path", "POST", "/api/v1/jobs/%00/cancel", b"", {}, 400),
    # Valid UTF-8 beyond ASCII is an id like any other: unknown, so 404 (not a 400).
    ("non-ascii id in the path", "GET", "/api/v1/jobs/%C3%A9%E4%B8%AD", b"", {}, 404),
    ("invalid utf-8 in the query", "GET", "/api/v1/jobs?queue=%ff", b"", {}, 400),
    ("nul in metadata filter", "GET", "/api/v1/jobs?metadata[k]=%00", b"", {}, 400),
    ("raw invalid utf-8 body", "POST", "/api/v1/jobs", b'{"type":"\xff"}', {}, 400),
    ("nul in body", "POST", "/api/v1/jobs", b'{"type":"a\\u0000"}', {}, 400),
    ("300-deep body", "POST", "/api/v1/jobs/batch", b'{"jobs":' + deep(300) + b"}", {}, 400),
]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("method", "target", "body", "headers", "status"),
    [pytest.param(*case[1:], id=case[0]) for case in LIVE_CASES],
)
def test_bad_input_through_gunicorn_gets_the_error_shape(
    transactional_db: None,
    tenant: Tenant,
    live: str,
    method: str,
    target: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    got, response_headers, content = raw_request(
        live, http(method, target, tenant.api_key, body, **headers)
    )
    assert got == status, content[:300]
    assert response_headers["content-type"] == "application/json"
    error = orjson.loads(content)["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    codes = {400: "validation_error", 404: "not_found", 431: "request_header_fields_too_large"}
    assert error["code"] == codes[status]
    assert error["request_id"] == response_headers["x-request-id"]
