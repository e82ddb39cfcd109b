"""The OpenAPI document against a live server: a schema-driven fuzzer (schemathesis) finds no
server error and no disagreement between what the document says and what the server does.

What is fuzzed, against gunicorn on loopback with the production job types (config.settings), no
rate limits and an unlimited client:
- positive mode, all 14 operations: data that fits the document, which the server must take
  (2xx, or a 401/404/409/422/429 that depends on state, not on the data's shape): every query filter
  of GET /jobs (statuses, types, queues, metadata[key], schedule_id, created_after/before as
  RFC 3339 date-times, cursor, limit 1-200), submission bodies of every registered type with its own
  input schema and caps, batches, Idempotency-Key headers, ids in the path (unknown: 404), and
  schedules (names, cron expressions, time zones, their jobs; a name taken is 409);
- negative mode, each operation that has something the document forbids (GET /jobs' query,
  POST /jobs and /jobs/batch: body and Idempotency-Key): the server must refuse it with a 4xx.
  GET /job-types and the four /jobs/{job_id} operations take only the fixed key and an id,
  which may be any string, so there is nothing to break;
- stateful: a state machine follows the document's links from POST /jobs and /jobs/batch (the
  202's job id) to GET /jobs/{id}, /deliveries, /cancel and /retry, mixing in invalid data; a
  job just created must not be 404, and each of the four operations must have answered a
  submitted job (200, 202 or 409).
Every response must match the document in status, content type and body.

The fuzzed copy of the document leaves out two submission fields whose checks the document can
only describe: ``webhook_url`` (its check resolves the host name, and this test sends nothing
beyond loopback, DNS included) and ``run_at`` (at most 365 days ahead, a bound relative to now);
both are covered by tests/jobs and tests/core/test_bad_inputs.py; and ``depends_on`` and ``ref``
(they name jobs that must exist, refs unique within a batch: tests/jobs/test_dependencies.py).
A schedule's ``job`` loses its
``webhook_url`` likewise, and positive mode draws cron expressions from a narrower grammar (see
``fuzzed_document``; tests/schedules covers ranges and days 30-31). It also leaves out the
``Prefer`` header of submissions (a valid one waits up to 60 s; tests/e2e/test_waiting.py), and,
for the state machine, ``unique_key`` (a duplicate's 200 depends on what earlier examples stored).
NUL is refused everywhere (the document's description says so; test_bad_inputs.py tries it on
every endpoint), so the fuzzer generates no NUL characters.

Bounded for CI: a fixed number of derandomised examples per operation (150) and of stateful
scenarios (100), about 3500 requests in 1-2 minutes on two busy cores (300 and 200 before, twice
the time; the checks are the same, every operation and mode still runs). The figures (requests
sent per operation and status) are printed at the end. To look further, run a copy with
derandomize=False and more examples (1500 per operation and 600 scenarios, about 18 600
requests, took 4-5 minutes and found nothing on four seeds); mind pytest's 180 s timeout per
test.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode

from apps.clients.services import client_create
from apps.schedules.cron import cron_pattern
from tests.support.processes import ManagedProcess, start_web

pytestmark = [pytest.mark.e2e]

EXAMPLES_PER_OPERATION = 150
STATEFUL_SCENARIOS = 100
STATEFUL_STEPS = 6
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
]
# Valid data may still meet a state that refuses it: an unknown or foreign id (404), a job
# not in a state that allows the action (409), an Idempotency-Key used before with another
# body (422), a quota (429).
POSITIVE_STATUSES = ["2xx", "3xx", "401", "404", "409", "422", "429"]

JOB_OPERATIONS = [
    "GET /api/v1/jobs/{job_id}",
    "GET /api/v1/jobs/{job_id}/deliveries",
    "POST /api/v1/jobs/{job_id}/cancel",
    "POST /api/v1/jobs/{job_id}/retry",
]

SENT: Counter[str] = Counter()  # "METHOD path-template status" -> requests


@pytest.fixture(scope="module")
def fuzz_server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process: ManagedProcess
    process, base = start_web(
        tmp_path_factory.mktemp("fuzz-web"),
        workers=2,
        DJANGO_SETTINGS_MODULE="config.settings",
        CONVEYOR_ENV="test",
        RATELIMIT_ENABLE="false",
        ACCESS_LOG="false",
        SENTRY_DSN="",
        BENCHMARK_ENDPOINTS="false",
    )
    started = time.monotonic()
    yield base
    elapsed = time.monotonic() - started
    process.stop()
    total = sum(SENT.values())
    statuses = Counter(key.rsplit(" ", 1)[1] for key in SENT.elements())
    print(
        f"\nschema fuzz: {total} requests in {elapsed:.0f} s; "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    for key, count in sorted(SENT.items()):
        print(f"  {key}: {count}")


def fuzzed_document(base: str, *, stateful: bool, narrow_cron: bool) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/api/schema/", timeout=60) as response:
        document: dict[str, Any] = json.loads(response.read())
    schemas = document["components"]["schemas"]
    submit = schemas["JobSubmitDocRequest"]
    # A unique_key's answer (202, or 200 for a duplicate) depends on what earlier examples
    # stored, which a state machine's replay cannot meet again (tests/jobs/test_unique_jobs.py
    # covers it; the stateless runs send it).
    left_out = (
        "webhook_url",
        "run_at",
        # Dependencies name jobs that must exist (and refs unique in a batch): state the
        # document cannot say; tests/jobs/test_dependencies.py covers them.
        "depends_on",
        "ref",
        *(("unique_key", "unique_for_seconds") if stateful else ()),
    )
    for name in left_out:
        submit["properties"].pop(name)
    submit.pop("not")  # run_at xor delay_seconds: moot without run_at
    schemas["ScheduleJobDocRequest"]["properties"].pop("webhook_url")
    if narrow_cron:
        # The cron grammar cannot say that a range ends after its start, that a day exists in
        # one of the months or that the expression fires at all ("0 0 LW 1 */7": the last
        # weekday of January on a Sunday): for data that must be taken, a grammar without
        # ranges, days 30-31, L or # (every match fires). Invalid data uses the full grammar.
        for name in ("ScheduleCreateDocRequest", "PatchedScheduleCreateDocRequest"):
            schemas[name]["properties"]["cron"]["pattern"] = cron_pattern(
                ranges=False, day_max=29, specials=False
            )
    # Prefer: wait=N would hold each submission N seconds (no worker runs the jobs here);
    # tests/e2e/test_waiting.py covers it. GET's ?wait= stays: without If-None-Match it
    # answers at once, and its bad values are fuzzed.
    post = document["paths"]["/api/v1/jobs"]["post"]
    post["parameters"] = [p for p in post["parameters"] if p["name"] != "Prefer"]
    return document


def _fuzz_schema(base: str, *, stateful: bool, narrow_cron: bool) -> Any:
    _, key = client_create(name="fuzz", unlimited=True)
    document = fuzzed_document(base, stateful=stateful, narrow_cron=narrow_cron)
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base, headers={"Authorization": f"Bearer {key}"})
    schema.config.generation.update(
        max_examples=EXAMPLES_PER_OPERATION, deterministic=True, allow_x00=False
    )
    schema.config.checks.update(included_check_names=CHECKS)
    schema.config.checks.positive_data_acceptance.expected_statuses = POSITIVE_STATUSES
    return schema


@pytest.fixture
def fuzz_schema(transactional_db: None, fuzz_server: str, request: pytest.FixtureRequest) -> Any:
    mode = getattr(request.node, "callspec", None) and request.node.callspec.params.get("mode")
    return _fuzz_schema(
        fuzz_server, stateful=False, narrow_cron=mode is not GenerationMode.NEGATIVE
    )


@pytest.fixture
def stateful_schema(transactional_db: None, fuzz_server: str) -> Any:
    return _fuzz_schema(fuzz_server, stateful=True, narrow_cron=True)


def _as_sent(value: Any) -> Any:
    """A query value as the fuzzer puts it on the wire: its text, None when it sends nothing."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, list):
        sent = [_as_sent(item) for item in value]
        return sent if all(isinstance(item, str) for item in sent) else ...
    if isinstance(value, int | float | str):
        return str(value)
    return ...  # an object: how it is sent is not known here


def _text_is_valid(text: str, schema: dict[str, Any]) -> bool:
    """Whether ``text`` is what the server reads as valid for a parameter of ``schema``: an
    array is comma-separated, an integer its digits."""
    if schema.get("type") == "array":
        return all(_text_is_valid(item, schema.get("items", {})) for item in text.split(","))
    if schema.get("type") == "integer":
        if not text.lstrip("-").isdigit():
            return False
        return Draft202012Validator(schema).is_valid(int(text))
    return Draft202012Validator(schema).is_valid(text)


def query_sent_is_valid(case: Any, document: dict[str, Any]) -> bool:
    """Whether a negative case whose only broken parts are query parameters is valid as sent
    after all: the fuzzer writes a boolean as "false" (a valid type name or cursor) and drops an
    empty object, then judges the request it generated, not the one it sent."""
    mutations = case.meta.phase.data.mutations if case.meta else ()
    if not mutations or any(m.parameter_location.value != "query" for m in mutations):
        return False
    operation = document["paths"][case.operation.path][case.operation.method.lower()]
    schemas = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
    for name in {m.parameter for m in mutations}:
        parameter = schemas.get(name or "")
        if parameter is None or name == "metadata":
            return False
        sent = _as_sent((case.query or {}).get(name))
        if sent is ...:
            return False
        values = [] if sent is None else sent if isinstance(sent, list) else [sent]
        if not values and parameter.get("required"):
            return False
        if not all(_text_is_valid(text, parameter["schema"]) for text in values):
            return False
    return True


def metadata_sent_is_valid(case: Any, validator: Draft202012Validator) -> bool:
    """Whether a negative case's only broken parameter is ``metadata`` and what is sent of it is
    valid after all. schemathesis writes a metadata[k] that is not a string as its text (None
    as metadata[k]=null, a valid string) or not at all ([]), and then judges the request it
    generated, not the one it sent (a gap in its deepObject serialisation; its own check of the
    query as sent reads parameters by name and misses metadata[k])."""
    mutations = case.meta.phase.data.mutations if case.meta else ()
    if not mutations or any(mutation.parameter != "metadata" for mutation in mutations):
        return False
    sent: dict[str, Any] = {}
    for name, value in (case.query or {}).items():
        if name.startswith("metadata["):
            values = value if isinstance(value, list) else [value]
            if len(values) > 1:
                return False  # metadata[k] repeated: the server refuses it
            if values:
                text = values[0] if isinstance(values[0], str) else json.dumps(values[0])
                sent[name[len("metadata[") : -1]] = text
    return validator.is_valid(sent)


def record(case: Any, response: Any) -> None:
    SENT[f"{case.operation.method.upper()} {case.operation.path} {response.status_code}"] += 1


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# A fixed number of examples, not a time budget: on a machine busy with the rest of a parallel
# run a mode can need more than the suite's 180 s; a slow server still fails each request at 30 s.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_agrees_with_the_document(fuzz_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) == 14  # 8 of jobs, 6 of schedules
    listing = fuzz_schema.raw_schema["paths"]["/api/v1/jobs"]["get"]["parameters"]
    metadata = Draft202012Validator(next(p for p in listing if p["name"] == "metadata")["schema"])
    for operation in operations:

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            if mode is GenerationMode.NEGATIVE:
                assume(not metadata_sent_is_valid(case, metadata))
                assume(not query_sent_is_valid(case, fuzz_schema.raw_schema))
            response = case.call(timeout=30)
            record(case, response)
            case.validate_response(response)

        # An id in the path is any string (an unknown one is 404, which positive mode sends):
        # with the key fixed, GET /job-types and the four /jobs/{job_id} operations have
        # nothing the document forbids, so negative mode has nothing to send them.
        breakable = [
            p
            for p in operation.iter_parameters()
            if p.location.value in ("query", "header") and p.name != "Authorization"
        ]
        if mode is GenerationMode.NEGATIVE and not breakable and not operation.body:
            continue
        fuzz()


@pytest.mark.timeout(600)
def test_links_from_a_submitted_job_hold(stateful_schema: Any) -> None:
    fuzz_schema = stateful_schema
    # Only the document's links (POST /jobs and /jobs/batch -> the job's id): links inferred
    # from GET /jobs would depend on what earlier examples left in the list, and Hypothesis
    # needs the same draws to meet the same responses.
    fuzz_schema.config.phases.stateful.inference.algorithms = []
    fuzz_schema.config.checks.update(included_check_names=[*CHECKS, "ensure_resource_availability"])
    fuzz_schema.config.checks.positive_data_acceptance.expected_statuses = POSITIVE_STATUSES
    linked: Counter[str] = Counter()  # "METHOD path-template status" through the machine

    class Machine(fuzz_schema.as_state_machine()):  # type: ignore[misc]
        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            record(case, response)
            if "{job_id}" in case.operation.path:
                method, path = case.operation.method.upper(), case.operation.path
                linked[f"{method} {path} {response.status_code}"] += 1

    Machine.run(
        settings=settings(
            FUZZ_SETTINGS,
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            phases=[Phase.generate],  # a replay would meet changed state: no shrinking
        )
    )
    print(f"\nschema fuzz, stateful: {dict(sorted(linked.items()))}")
    # Only a job that exists answers 200, 202 or 409; an id the fuzzer made up is 404.
    for operation in JOB_OPERATIONS:
        reached = [key for key in linked if key.startswith(f"{operation} ")]
        assert any(key.endswith((" 200", " 202", " 409")) for key in reached), (operation, linked)
