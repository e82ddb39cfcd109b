"""Logs and metrics from real processes: gunicorn with two workers, a Celery worker with its
pool and its metrics port. One job is followed by its request id from the web's access line to
the worker's transition lines; counters are read back with prometheus-client's parser."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.broker import empty_test_broker
from tests.support.http import call
from tests.support.processes import ManagedProcess, free_port, start_web, start_worker, wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]

ECHO = {"type": "diagnostics.echo", "input": {"message": "observed"}}


@pytest.fixture(scope="module")
def worker(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, str]]:
    empty_test_broker()
    port = free_port()
    with django_db_blocker.unblock():
        process = start_worker(
            tmp_path_factory.mktemp("obs-worker"),
            name="obsworker",
            extra_args=["--metrics-port", str(port)],
            LOG_FORMAT="json",
            WORKER_HEARTBEAT_SECONDS="0.5",
        )
    yield process, f"http://127.0.0.1:{port}"
    process.stop()


@pytest.fixture(scope="module")
def web(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, str]]:
    process, base = start_web(tmp_path_factory.mktemp("obs-web"), workers=2, LOG_FORMAT="json")
    yield process, base
    process.stop()


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of a process's output, parsed: fails on a line that is not JSON."""
    lines = []
    for line in output.splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
    return lines


def scrape(base: str) -> str:
    status, headers, body = call(base, "GET", "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    return body.decode()


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def run_job(base: str, tenant: Tenant, request_id: str) -> dict[str, Any]:
    status, headers, body = call(
        base, "POST", "/api/v1/jobs", key=tenant.api_key, body=ECHO,
        headers={"X-Request-ID": request_id},
    )  # fmt: skip
    assert status == 202, body
    assert headers["X-Request-ID"] == request_id
    job_id = json.loads(body)["id"]

    def finished() -> dict[str, Any] | None:
        _, _, raw = call(base, "GET", f"/api/v1/jobs/{job_id}", key=tenant.api_key)
        job = json.loads(raw)
        return job if job["status"] in {"succeeded", "failed", "canceled"} else None

    job = wait_for(finished, timeout=20, interval=0.1)
    assert job["status"] == "succeeded"
    return job


def test_one_request_id_in_web_and_worker_json_logs(
    transactional_db: None, tenant: Tenant, web: tuple[ManagedProcess, str], worker: Any
) -> None:
    web_process, base = web
    worker_process, _ = worker
    request_id = f"trace-{uuid.uuid4().hex}"
    job = run_job(base, tenant, request_id)

    def access_lines() -> list[dict[str, Any]]:
        return [
            line
            for line in json_lines(web_process.output())
            if line.get("request_id") == request_id and line["logger"] == "conveyor.access"
        ]

    access = wait_for(access_lines, timeout=5)  # written by a thread, within 50 ms
    assert len(access) == 1
    assert access[0]["route"] == "api/v1/jobs"
    assert (access[0]["method"], access[0]["status"]) == ("POST", 202)
    assert access[0]["client_id"] == tenant.client.pk
    assert access[0]["duration_ms"] > 0

    def transitions() -> list[dict[str, Any]] | None:
        found = [
            line
            for line in json_lines(worker_process.output())
            if line.get("request_id") == request_id and line["logger"] == "conveyor.jobs"
        ]
        return found if len(found) >= 2 else None

    lines = wait_for(transitions, timeout=5)
    assert [(line["from_status"], line["to_status"]) for line in lines] == [
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    for line in lines:
        assert line["job_id"] == job["id"]
        assert (line["job_type"], line["queue"], line["attempt"]) == (
            "diagnostics.echo",
            "default",
            1,
        )
        assert line["duration_ms"] >= 0
    assert tenant.api_key not in web_process.output()


def test_metrics_add_up_across_processes_and_move_with_a_job(
    transactional_db: None, tenant: Tenant, web: tuple[ManagedProcess, str], worker: Any
) -> None:
    _, base = web
    _, worker_base = worker
    web_before, worker_before = scrape(base), scrape(worker_base)

    # Two gunicorn workers answer these; /metrics must count every one of them.
    for _ in range(20):
        assert call(base, "GET", "/healthz")[0] == 200
    run_job(base, tenant, f"metrics-{uuid.uuid4().hex}")

    web_after = scrape(base)
    healthz = {"route": "healthz", "method": "GET", "status": "200"}
    name = "conveyor_http_request_duration_seconds_count"
    assert value(web_after, name, **healthz) - value(web_before, name, **healthz) == 20
    echo = {"type": "diagnostics.echo"}
    submitted = "conveyor_jobs_submitted_total"
    assert value(web_after, submitted, **echo) - value(web_before, submitted, **echo) == 1

    def worker_moved() -> str | None:
        text = scrape(worker_base)
        finished = "conveyor_jobs_finished_total"
        done = {**echo, "status": "succeeded"}
        return (
            text if value(text, finished, **done) - value(worker_before, finished, **done) else None
        )

    worker_after = wait_for(worker_moved, timeout=5)
    for histogram in ("conveyor_job_run_seconds_count", "conveyor_job_queue_wait_seconds_count"):
        assert value(worker_after, histogram, **echo) - value(worker_before, histogram, **echo) == 1
    # The worker's endpoint has its own processes' samples only: no HTTP, no queue gauges.
    assert value(worker_after, name, **healthz) == 0
    assert "conveyor_queue_depth" not in worker_after

    def live() -> str | None:
        text = scrape(base)
        return text if value(text, "conveyor_workers_active", queue="default") >= 1 else None

    text = wait_for(live, timeout=5)
    assert value(text, "conveyor_worker_processes", queue="default") >= 2
    assert value(text, "conveyor_metrics_source_up", source="broker") == 1
    assert "conveyor_queue_jobs" in text
    assert "conveyor_queue_oldest_job_age_seconds" in text


def test_multiprocess_directories_are_removed_when_the_processes_exit(
    tmp_path: Path, django_db_setup: None
) -> None:
    metrics_dir = tmp_path / "metrics"
    process, base = start_web(tmp_path, workers=2, METRICS_DIR=str(metrics_dir))
    # The socket accepts before the workers have loaded the app: on a busy machine (the suite
    # runs in parallel) the first answer can take longer than call's usual 10 s.
    call(base, "GET", "/healthz", timeout=60)
    groups = list(metrics_dir.iterdir())
    assert [group.name for group in groups] == [f"web-{process.pid}"]
    assert any(groups[0].iterdir())  # the workers' sample files
    process.stop()
    assert not groups[0].exists()
