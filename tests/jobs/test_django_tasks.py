"""Django ``@task`` functions as job types (apps/jobs/django_tasks.py): registration, the input
checked at submission, the run, and the result and error mapping, in-process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.tasks import Task
from django.tasks.exceptions import InvalidTask

from apps.jobs import django_tasks
from apps.jobs.models import Job, JobStatus
from apps.jobs.registry import _registry
from tests.support.tenants import Tenant
from workers import runtime

pytestmark = pytest.mark.django_db

MODULE = "tests.support.django_tasks"
TASKS = {f"{MODULE}.{name}" for name in ("add", "decline", "when", "which_attempt", "slow_echo")}


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names = django_tasks.register_task_modules([MODULE])
    yield names
    for name in names:
        _registry.pop(name, None)
        django_tasks._registered.pop(name, None)


def submit(tenant: Tenant, name: str, input: Any, **fields: Any) -> Any:
    return tenant.post("/api/v1/jobs", {"type": f"{MODULE}.{name}", "input": input, **fields})


def run(tenant: Tenant, name: str, input: Any, **fields: Any) -> Job:
    response = submit(tenant, name, input, **fields)
    assert response.status_code == 202, response.json()
    job_id = response.json()["id"]
    runtime.execute(job_id)
    return Job.objects.get(pk=job_id)


def test_the_tasks_defined_in_the_module_are_listed_with_their_schema(
    registered: list[str], tenant: Tenant
) -> None:
    assert set(registered) == TASKS
    types = {t["name"]: t for t in tenant.get("/api/v1/job-types").json()["results"]}
    assert set(types) >= TASKS
    add = types[f"{MODULE}.add"]
    assert add["description"] == "Add two numbers."
    assert add["queue"] == "default"
    assert add["max_attempts"] == 1
    schema = add["input_schema"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["args"]["type"] == "array"
    assert schema["properties"]["kwargs"]["type"] == "object"
    assert types[f"{MODULE}.slow_echo"]["queue"] == "heavy"


@pytest.mark.parametrize(
    "name",
    [
        f"{MODULE}.not_a_task",  # a plain function of a listed module
        "tests.support.django_tasks_elsewhere.imported_task",  # a task the listed module imports
        "os.system",
        "tests.support.never_imported.anything",
    ],
)
def test_a_dotted_path_that_is_not_a_registered_task_is_an_unknown_type(
    registered: list[str], tenant: Tenant, name: str
) -> None:
    response = tenant.post("/api/v1/jobs", {"type": name, "input": {"args": []}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "type" in response.json()["error"]["details"]
    assert "tests.support.never_imported" not in sys.modules


@pytest.mark.parametrize(
    ("name", "input", "field"),
    [
        ("add", {"args": "1, 2"}, "input.args"),
        ("add", {"kwargs": [1]}, "input.kwargs"),
        ("add", {"args": [1], "extra": True}, "input.extra"),
        ("add", {"args": [1, 2, 3]}, "input.args"),  # too many arguments
        ("add", {"args": []}, "input.args"),  # a required argument missing
        ("add", {"args": [1], "kwargs": {"c": 2}}, "input.args"),  # an unexpected keyword
        ("which_attempt", {"args": ["x"], "kwargs": {"context": 1}}, "input.kwargs"),
    ],
)
def test_input_that_does_not_fit_the_task_is_refused_at_submission(
    registered: list[str], tenant: Tenant, name: str, input: Any, field: str
) -> None:
    response = submit(tenant, name, input)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    assert not Job.objects.exists()


def test_the_return_value_is_the_result(registered: list[str], tenant: Tenant) -> None:
    job = run(tenant, "add", {"args": [2], "kwargs": {"b": 3}})
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"return_value": 5})
    job = run(tenant, "add", {"args": [7]})
    assert job.result == {"return_value": 7}


def test_an_exception_fails_the_job_with_its_class_path_and_traceback(
    registered: list[str], tenant: Tenant
) -> None:
    job = run(tenant, "decline", {"args": ["insufficient funds"]})
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    error = tenant.get(f"/api/v1/jobs/{job.pk}").json()["error"]
    assert error["code"] == "task_error"
    assert error["message"] == f"{MODULE}.Declined: card declined: insufficient funds"
    assert error["details"]["exception_class"] == f"{MODULE}.Declined"
    assert 'raise Declined(f"card declined: {reason}")' in error["details"]["traceback"]
    assert len(error["details"]["traceback"]) <= django_tasks.TRACEBACK_MAX_CHARS


def test_an_exception_is_retried_when_the_submission_asks_for_attempts(
    registered: list[str], tenant: Tenant
) -> None:
    job = run(tenant, "decline", {"args": ["later"]}, max_attempts=2)
    assert job.status == JobStatus.RETRYING
    assert job.error["code"] == "task_error"


def test_a_return_value_that_is_not_json_fails_the_job(
    registered: list[str], tenant: Tenant
) -> None:
    job = run(tenant, "when", {})
    assert job.status == JobStatus.FAILED
    assert job.error["code"] == "invalid_result"
    assert "not JSON" in job.error["message"]


def test_a_task_that_takes_context_gets_the_job_id_and_attempt(
    registered: list[str], tenant: Tenant
) -> None:
    job = run(tenant, "which_attempt", {"args": ["first"]})
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"return_value": {"label": "first", "id": str(job.pk), "attempt": 1}}


def test_a_coroutine_task_is_awaited(registered: list[str], tenant: Tenant) -> None:
    job = run(tenant, "slow_echo", {"args": [{"nested": [1, None, "x"]}]})
    assert job.result == {"return_value": {"nested": [1, None, "x"]}}


def Shout() -> None:
    pass


def shout() -> None:
    pass


def test_a_task_whose_path_cannot_be_a_job_type_name_is_refused_at_startup() -> None:
    with pytest.raises(ImproperlyConfigured, match="lower-case"):
        django_tasks.job_type_for(Task(func=Shout))
    with pytest.raises(ImproperlyConfigured, match="queue"):
        django_tasks.job_type_for(Task(func=shout, queue_name="Reports"))


def test_a_missing_task_module_fails_loudly() -> None:
    with pytest.raises(ModuleNotFoundError):
        django_tasks.register_task_modules(["tests.support.no_such_tasks"])


def test_tasks_are_not_enqueued_from_inside_conveyor() -> None:
    from tests.support.django_tasks import add

    with pytest.raises(InvalidTask, match="not enqueued from inside Conveyor"):
        add.enqueue(1, 2)
