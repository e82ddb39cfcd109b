"""The client and the server's OpenAPI document agree: every operation the client wraps exists
with the parameters the client sends, and every field the document lets a submission, a list or
a schedule carry is one the client accepts."""

from __future__ import annotations

import inspect

import httpx
import pytest
from conveyor_client import AsyncClient, Client, _core


@pytest.fixture(scope="module")
def schema(conveyor_server) -> dict:
    response = httpx.get(f"{conveyor_server.url}/api/schema/", timeout=30)
    assert response.status_code == 200
    return response.json()


def _operation(schema: dict, method: str, path: str) -> dict:
    return schema["paths"][path][method.lower()]


def _body_fields(schema: dict, operation: dict) -> set[str]:
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return set(schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])


def _parameters(operation: dict, where: str) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == where}


def test_every_wrapped_operation_exists_on_both_clients(schema: dict) -> None:
    for name, (method, path) in _core.OPERATIONS.items():
        assert path in schema["paths"], path
        assert method.lower() in schema["paths"][path], (method, path)
        assert callable(getattr(Client, name)), name
        assert callable(getattr(AsyncClient, name)), name


def test_every_operation_of_the_document_is_wrapped(schema: dict) -> None:
    wrapped = set(_core.OPERATIONS.values())
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/_"):  # _: internal
            continue
        for method in operations:
            if method in {"get", "post", "patch", "put", "delete"}:
                assert (method.upper(), path) in wrapped, f"{method.upper()} {path} not wrapped"


def test_every_submission_field_is_accepted_by_submit(schema: dict) -> None:
    fields = _body_fields(schema, _operation(schema, "POST", "/api/v1/jobs"))
    assert {"type", "input"} <= fields
    assert fields - {"type", "input"} <= _core.BODY_OPTIONS
    # Each is turned into the body as given (nothing silently dropped).
    samples = {"metadata": {"k": "v"}, "webhook_events": ["job.failed"], "depends_on": ["j"]}
    options = {name: samples.get(name, 1) for name in fields - {"type", "input"}}
    options["run_at"] = "2030-01-01T00:00:00Z"
    body = _core.submission("t", {}, options)
    assert set(body) == fields


def test_batch_entries_take_the_same_fields(schema: dict) -> None:
    batch = _operation(schema, "POST", "/api/v1/jobs/batch")
    ref = batch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    jobs = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["jobs"]
    entry = schema["components"]["schemas"][jobs["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(entry["properties"]) - {"type", "input"} <= _core.BODY_OPTIONS


def test_submission_headers_are_in_the_document(schema: dict) -> None:
    submit = _operation(schema, "POST", "/api/v1/jobs")
    assert {"Idempotency-Key", "Prefer"} <= _parameters(submit, "header")
    assert "Idempotency-Key" in _parameters(
        _operation(schema, "POST", "/api/v1/jobs/batch"), "header"
    )


def test_list_filters_match_the_query_parameters(schema: dict) -> None:
    documented = _parameters(_operation(schema, "GET", "/api/v1/jobs"), "query")
    assert documented == _core.LIST_FILTERS
    assert {"cursor", "limit"} <= _parameters(
        _operation(schema, "GET", "/api/v1/schedules"), "query"
    )


def test_wait_uses_the_documented_long_poll(schema: dict) -> None:
    detail = _operation(schema, "GET", "/api/v1/jobs/{job_id}")
    [wait] = [p for p in detail["parameters"] if p["name"] == "wait"]
    assert wait["schema"]["maximum"] == _core.LONG_POLL_MAX_SECONDS
    assert wait["schema"]["minimum"] == 1


def test_schedule_fields_match(schema: dict) -> None:
    create = _body_fields(schema, _operation(schema, "POST", "/api/v1/schedules"))
    patch = _body_fields(schema, _operation(schema, "PATCH", "/api/v1/schedules/{schedule_id}"))
    assert create == _core.SCHEDULE_FIELDS
    assert patch == _core.SCHEDULE_FIELDS
    parameters = set(inspect.signature(Client.create_schedule).parameters) - {"self"}
    assert parameters == _core.SCHEDULE_FIELDS
    async_parameters = set(inspect.signature(AsyncClient.create_schedule).parameters) - {"self"}
    assert async_parameters == _core.SCHEDULE_FIELDS
