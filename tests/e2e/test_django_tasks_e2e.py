"""Django's tasks framework on Conveyor, end to end: the example project (examples/django_tasks)
enqueues its ``@task`` functions through ``conveyor_client.django.ConveyorBackend``; gunicorn,
a worker pool (queues default and reports) and the scheduler run them from
``CONVEYOR_TASK_MODULES=shop.tasks``; the example reads the results back as ``TaskResult``."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from types import ModuleType
from typing import Any

import pytest
from conveyor_client.django import ConveyorBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist

from apps.jobs.models import Job, JobPriority
from tests.support.processes import ROOT, start_scheduler, start_web, start_worker
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXAMPLE = ROOT / "examples" / "django_tasks"
SERVER_ENV = {"CONVEYOR_TASK_MODULES": "shop.tasks", "PYTHONPATH": str(EXAMPLE)}
READY = 120  # seconds for a process to start on a loaded machine


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Conveyor's web, a pool for the queues default and reports, and the scheduler (which
    queues a deferred job when it is due), with the example's tasks registered."""
    tmp_path = tmp_path_factory.mktemp("django-tasks")
    # Started side by side (each takes seconds on a busy machine); a start that fails stops
    # its own process, and the others are stopped here.
    starts: list[Callable[[], Any]] = [
        lambda: start_web(tmp_path, ready_timeout=READY, **SERVER_ENV),
        lambda: start_worker(tmp_path, queues="default,reports", ready_timeout=READY, **SERVER_ENV),
        lambda: start_scheduler(tmp_path, ready_timeout=READY, **SERVER_ENV),
    ]
    with django_db_blocker.unblock(), ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(start) for start in starts]
        wait(futures)
    started = [f.result() for f in futures if f.exception() is None]
    processes = [p[0] if isinstance(p, tuple) else p for p in started]
    try:
        _web, base = futures[0].result()
        for future in futures[1:]:
            future.result()
        yield base
    finally:
        with ThreadPoolExecutor(len(starts)) as pool:
            list(pool.map(lambda process: process.stop(), processes))


@pytest.fixture
def shop_tasks(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example's tasks module, imported here too (for the backend used in-process)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return importlib.import_module("shop.tasks")


@pytest.fixture
def backend(server: str, make_tenant: Callable[..., Tenant]) -> ConveyorBackend:
    """The backend as the example's TASKS configures it, in this process, for what is refused
    (no need for the example's own process there)."""
    tenant = make_tenant(unlimited=True)
    return ConveyorBackend(
        "default",
        {"QUEUES": ["default", "reports"], "OPTIONS": {"URL": server, "API_KEY": tenant.api_key}},
    )


@pytest.fixture
def shop(server: str, make_tenant: Callable[..., Tenant]) -> Callable[..., Any]:
    """Runs a command of the example project (its own settings) against the live server as a
    new API client; its JSON output, or Refused with its stderr."""
    tenant = make_tenant(unlimited=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "PYTHONPATH": str(EXAMPLE),  # conveyor_client: installed by make install-dev
        "CONVEYOR_URL": server,
        "CONVEYOR_API_KEY": tenant.api_key,
    }

    def run(*argv: str) -> Any:
        done = subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=EXAMPLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
        if done.returncode != 0:
            raise Refused(done.stderr)
        return json.loads(done.stdout)

    return run


class Refused(Exception):
    """A command of the example exited non-zero; its stderr."""


def test_enqueue_then_get_result_returns_the_return_value(shop: Callable[..., Any]) -> None:
    run = shop("enqueue", "shop.tasks.add", "[2, 3.5]", "--wait", "60")
    enqueued, done = run["enqueued"], run["finished"]
    assert enqueued["status"] == "READY"
    assert (enqueued["args"], enqueued["kwargs"]) == ([2, 3.5], {})
    assert done["status"] == "SUCCESSFUL", done
    assert done["return_value"] == 5.5
    assert (done["id"], done["task"]) == (enqueued["id"], "shop.tasks.add")
    assert (done["attempts"], done["worker_ids"], done["errors"]) == (1, ["conveyor:default"], [])
    enqueued_at, started_at, finished_at = (
        datetime.fromisoformat(done[k]) for k in ("enqueued_at", "started_at", "finished_at")
    )
    assert enqueued_at <= started_at <= finished_at
    assert done["last_attempted_at"] == done["started_at"]
    assert Job.objects.get(pk=done["id"]).priority == JobPriority.NORMAL  # priority 0


def test_async_enqueue_and_result_of_a_coroutine_task(shop: Callable[..., Any]) -> None:
    run = shop(
        "enqueue", "shop.tasks.greet", "--kwargs", '{"name": "Ada"}', "--async", "--wait", "60"
    )
    done = run["finished"]
    assert (done["status"], done["return_value"]) == ("SUCCESSFUL", "Hello, Ada!")


def test_a_failing_task_is_failed_with_its_exception(shop: Callable[..., Any]) -> None:
    done = shop("enqueue", "shop.tasks.charge", '["o-17", 250000]', "--wait", "60")["finished"]
    assert done["status"] == "FAILED"
    assert "return_value" not in done
    [error] = done["errors"]
    assert error["exception_class_path"] == "shop.tasks.PaymentDeclined"
    assert "raise PaymentDeclined" in error["traceback"]
    assert "order o-17: 250000 cents is over the limit" in error["traceback"]
    job = Job.objects.get(pk=done["id"])
    assert job.attempts == 1
    # @task(priority=10): above 0 is Conveyor's high.
    assert (done["priority"], job.priority) == (10, JobPriority.HIGH)


def test_run_after_defers_the_start_and_a_negative_priority_is_low(
    shop: Callable[..., Any],
) -> None:
    run = shop(
        "enqueue",
        "shop.tasks.add",
        "[4, 4]",
        "--run-after-seconds",
        "3",
        "--priority",
        "-20",
        "--wait",
        "60",
    )
    enqueued, done = run["enqueued"], run["finished"]
    run_after = datetime.fromisoformat(enqueued["run_after"])
    assert enqueued["status"] == "READY"
    assert (done["status"], done["return_value"]) == ("SUCCESSFUL", 8)
    assert datetime.fromisoformat(done["started_at"]) >= run_after
    job = Job.objects.get(pk=done["id"])
    assert job.run_at is not None
    assert abs((job.run_at - run_after).total_seconds()) < 0.01
    assert job.priority == JobPriority.LOW


def test_a_task_runs_on_the_queue_its_decorator_names(
    shop: Callable[..., Any], backend: ConveyorBackend, shop_tasks: ModuleType
) -> None:
    done = shop("enqueue", "shop.tasks.sales_report", '["emea"]', "--wait", "60")["finished"]
    assert done["status"] == "SUCCESSFUL", done
    assert done["return_value"] == {"region": "emea", "job_id": done["id"], "attempt": 1}
    assert done["worker_ids"] == ["conveyor:reports"]
    assert Job.objects.get(pk=done["id"]).queue == "reports"
    # The API has no per-job queue: another queue than the registered one is refused.
    with pytest.raises(InvalidTask, match="on queue 'default', not 'reports'"):
        backend.enqueue(shop_tasks.add.using(queue_name="reports"), (1, 2), {})


def test_a_task_the_server_does_not_list_is_refused(
    backend: ConveyorBackend, shop_tasks: ModuleType
) -> None:
    from shop.maintenance import purge_cache

    with pytest.raises(InvalidTask, match="not in the server's CONVEYOR_TASK_MODULES"):
        backend.enqueue(purge_cache, (), {})
    with pytest.raises(InvalidTask, match="do not fit add"):  # b is missing: a 400
        backend.enqueue(shop_tasks.add, (1,), {})
    assert not Job.objects.exists()


def test_an_unknown_or_foreign_id_has_no_result(
    backend: ConveyorBackend, make_tenant: Callable[..., Tenant]
) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result("01a23000-0000-7000-8000-000000000000")
    other = make_tenant("other")
    foreign = other.post("/api/v1/jobs", {"type": "shop.tasks.add", "input": {"args": [1, 2]}})
    assert foreign.status_code == 400  # this process has no CONVEYOR_TASK_MODULES …
    foreign = other.submit()  # … so another client's echo job stands in
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(foreign.json()["id"])
