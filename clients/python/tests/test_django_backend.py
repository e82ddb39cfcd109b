"""conveyor_client.django without a server: how a job maps onto a TaskResult, what enqueue()
sends, and what is refused before any request (the backend points at a closed port, so a request
would raise ConnectionFailed instead of the error asserted). The live round trips are
tests/e2e/test_django_tasks_e2e.py, through the example project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conveyor_client.django import ConveyorBackend, conveyor_priority
from conveyor_client.models import Job
from django.tasks import Task, TaskResultStatus
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist

from tests.support.django_tasks import add, which_attempt

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers


def backend(**options: Any) -> ConveyorBackend:
    return ConveyorBackend(
        "conveyor", {"QUEUES": [], "OPTIONS": {"URL": NOWHERE, "API_KEY": "k", **options}}
    )


def job(**fields: Any) -> Job:
    data = {
        "id": "01a23000-0000-7000-8000-000000000001",
        "type": "tests.support.django_tasks.add",
        "status": "queued",
        "input": {"args": [1], "kwargs": {"b": 2}},
        "queue": "default",
        "attempts": 0,
        "created_at": "2026-12-01T10:00:00.000000Z",
        **fields,
    }
    return Job.from_dict(data)


@pytest.mark.parametrize(
    ("priority", "level"),
    [(-100, "low"), (-1, "low"), (0, "normal"), (1, "high"), (100, "high")],
)
def test_priority_maps_onto_three_levels(priority: int, level: str) -> None:
    assert conveyor_priority(priority) == level


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("queued", TaskResultStatus.READY),
        ("scheduled", TaskResultStatus.READY),
        ("retrying", TaskResultStatus.READY),
        ("running", TaskResultStatus.RUNNING),
        ("succeeded", TaskResultStatus.SUCCESSFUL),
        ("failed", TaskResultStatus.FAILED),
        ("canceled", TaskResultStatus.FAILED),
    ],
)
def test_status_mapping(status: str, expected: TaskResultStatus) -> None:
    assert backend().to_result(job(status=status)).status == expected


def test_a_succeeded_job_maps_its_result_times_and_attempts() -> None:
    result = backend().to_result(
        job(
            status="succeeded",
            result={"return_value": 3},
            attempts=2,
            started_at="2026-12-01T10:00:01.000000Z",
            finished_at="2026-12-01T10:00:02.000000Z",
        )
    )
    assert result.task is add
    assert (result.args, result.kwargs) == ([1], {"b": 2})
    assert result.return_value == 3
    assert result.enqueued_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert (
        result.started_at == result.last_attempted_at == datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC)
    )
    assert result.finished_at == datetime(2026, 12, 1, 10, 0, 2, tzinfo=UTC)
    assert (result.attempts, result.worker_ids) == (2, ["conveyor:default"] * 2)
    assert result.backend == "conveyor"


def test_a_task_exception_maps_to_its_class_path_and_traceback() -> None:
    error = {
        "code": "task_error",
        "message": "ValueError: no",
        "details": {"exception_class": "builtins.ValueError", "traceback": "Traceback …"},
    }
    failed = job(status="failed", error=error, attempts=1)
    assert failed.error is not None
    assert failed.error.details["exception_class"] == "builtins.ValueError"
    result = backend().to_result(failed)
    [task_error] = result.errors
    assert task_error.exception_class_path == "builtins.ValueError"
    assert task_error.exception_class is ValueError
    assert task_error.traceback == "Traceback …"
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018 - the property raises


def test_other_failures_map_to_the_modules_exceptions() -> None:
    lost = {"code": "worker_lost", "message": "the worker (w) stopped heartbeating"}
    [error] = backend().to_result(job(status="failed", error=lost)).errors
    assert error.exception_class_path == "conveyor_client.django.ConveyorJobFailed"
    assert error.traceback == "worker_lost: the worker (w) stopped heartbeating"
    canceled = {"code": "dependency_failed", "message": "x"}
    [error] = backend().to_result(job(status="canceled", error=canceled)).errors
    assert error.exception_class.__name__ == "ConveyorJobCanceled"
    assert backend().to_result(job(status="canceled")).errors == []


def test_a_job_that_is_not_a_task_here_has_no_result() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        backend().to_result(job(type="diagnostics.echo"))
    with pytest.raises(TaskResultDoesNotExist):
        backend().to_result(job(type="tests.support.django_tasks.not_a_task"))


@pytest.mark.parametrize("result_id", ["../jobs", "a/cancel", "", "x" * 65, "id?wait=60"])
def test_an_id_that_cannot_be_a_job_id_is_refused_without_a_request(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        backend().get_result(result_id)


def test_the_submission_carries_type_input_priority_and_run_at() -> None:
    when = datetime(2027, 1, 1, 12, tzinfo=UTC)
    body = backend().submission(add.using(priority=-3, run_after=when), (1,), {"b": (2, 3)})
    assert body == {
        "type": "tests.support.django_tasks.add",
        "input": {"args": [1], "kwargs": {"b": [2, 3]}},
        "priority": "low",
        "run_at": "2027-01-01T12:00:00+00:00",
    }


def test_arguments_that_are_not_json_are_refused_before_any_request() -> None:
    with pytest.raises(InvalidTask, match="must be JSON"):
        backend().enqueue(add, (datetime.now(UTC),), {})


def test_a_queue_other_than_the_registered_one_is_refused() -> None:
    conveyor = backend()
    with pytest.raises(InvalidTask, match="on queue 'default', not 'reports'"):
        conveyor.check_registered(add.using(queue_name="reports"), {add.module_path: "default"})
    with pytest.raises(InvalidTask, match="CONVEYOR_TASK_MODULES"):
        conveyor.check_registered(which_attempt, {add.module_path: "default"})
    conveyor.check_registered(add, {add.module_path: "default"})


def Upper() -> None:
    pass


def test_a_task_whose_path_cannot_be_a_job_type_is_invalid() -> None:
    with pytest.raises(InvalidTask, match="lower-case"):
        backend().validate_task(Task(func=Upper))
    with pytest.raises(InvalidTask, match="Queue"):
        backend().validate_task(add.using(queue_name="Reports!"))


def test_missing_url_or_key_is_a_check_error() -> None:
    errors = ConveyorBackend("default", {"OPTIONS": {}}).check()
    assert [e.id for e in errors] == ["conveyor.E001", "conveyor.E001"]
    assert backend().check() == []


def test_run_after_in_the_future_is_sent_as_is() -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert backend().submission(add.using(run_after=later), (1,), {})["run_at"] == later.isoformat()
