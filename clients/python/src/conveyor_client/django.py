"""A backend for Django's tasks framework (``django.tasks``) that runs tasks on Conveyor.

    TASKS = {
        "default": {
            "BACKEND": "conveyor_client.django.ConveyorBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"URL": "https://jobs.example.com", "API_KEY": env("CONVEYOR_API_KEY")},
        }
    }

``my_task.enqueue(*args, **kwargs)`` submits a job whose type is the task's dotted path
(``Task.module_path``) and whose input is ``{"args": [...], "kwargs": {...}}``; Conveyor's server
runs it when the task's module is listed in its ``CONVEYOR_TASK_MODULES`` (docs/job-types.md,
"Django tasks"). ``get_result(id)`` reads the job back as a ``TaskResult``.

Mappings (Conveyor ← Django):

- ``priority`` (-100…100, default 0) → ``low`` below 0, ``normal`` at 0, ``high`` above 0:
  Conveyor has three levels, and ``priority`` orders a client's own jobs within a queue.
- ``run_after`` → ``run_at`` (at most 365 days ahead, the API's limit).
- ``queue_name`` → the queue: a task runs on the queue its ``@task(queue_name=…)`` names on the
  server, which registers it there; ``.using(queue_name=…)`` to any other queue is refused
  (``InvalidTask``) before anything is submitted, since the API has no per-job queue.
- status: queued, scheduled, retrying → READY; running → RUNNING; succeeded → SUCCESSFUL;
  failed, canceled → FAILED. ``return_value``: the job's ``result["return_value"]``.
- ``errors``: the job's last error. A task's exception gives its class path and traceback; any
  other failure (timeout, worker lost, canceled) gives ``ConveyorJobFailed`` or
  ``ConveyorJobCanceled`` of this module, with ``"<code>: <message>"`` as the traceback.
- ``enqueued_at`` = ``created_at``; ``started_at`` and ``last_attempted_at`` = the job's
  ``started_at`` (its latest attempt's start); ``finished_at`` = ``finished_at``.
- ``worker_ids``: the API names the pool that ran a job, not the process, so one
  ``"conveyor:<queue>"`` per attempt, which makes ``TaskResult.attempts`` the job's attempts.

Enqueue and read errors of the API raise the client's exceptions (``conveyor_client.RateLimited``,
``ServiceUnavailable``, …, after its retries), except: a type or input the server refuses →
``InvalidTask``; an unknown id, another client's job, or a job that is not a task of this
project → ``TaskResultDoesNotExist``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from django.core import checks
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from conveyor_client.aio import AsyncClient
from conveyor_client.client import Client
from conveyor_client.errors import NotFound, PayloadTooLarge, ValidationError
from conveyor_client.models import Job

__all__ = ["ConveyorBackend", "ConveyorJobCanceled", "ConveyorJobFailed", "conveyor_priority"]

# The server's names: a job type is lower-case dotted words; a queue lower-case words with -_.
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_QUEUE_NAME = re.compile(r"[a-z][a-z0-9_\-]*")
_JOB_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")

STATUS = {
    "queued": TaskResultStatus.READY,
    "scheduled": TaskResultStatus.READY,
    "retrying": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "canceled": TaskResultStatus.FAILED,
}


class ConveyorJobFailed(Exception):
    """The exception class of a ``TaskError`` for a job that failed without an exception of the
    task (a timeout, a lost worker, a refused result)."""


class ConveyorJobCanceled(ConveyorJobFailed):
    """The exception class of a ``TaskError`` for a canceled job."""


def conveyor_priority(priority: int) -> str:
    """Django's priority (-100…100) as Conveyor's: low below 0, normal at 0, high above."""
    if priority < 0:
        return "low"
    return "high" if priority > 0 else "normal"


def worker_ids(queue: str, attempts: int) -> list[str]:
    return [f"conveyor:{queue}"] * attempts


class ConveyorBackend(BaseTaskBackend):
    supports_defer = True
    # The function runs in Conveyor's worker, which awaits a coroutine function to its end.
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.url = str(self.options.get("URL") or "")
        self.api_key = str(self.options.get("API_KEY") or "")
        self.timeout = float(self.options.get("TIMEOUT", 30.0))
        # How long the server's list of job types (the registered tasks and their queues) is
        # trusted before enqueue() reads it again.
        self.job_types_ttl = float(self.options.get("JOB_TYPES_TTL", 300.0))
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._queues: dict[str, str] = {}
        self._queues_read_at = float("-inf")

    # --- configuration -------------------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = list(super().check(**kwargs))
        for option in ("URL", "API_KEY"):
            if not self.options.get(option):
                messages.append(
                    checks.Error(
                        f"TASKS[{self.alias!r}]['OPTIONS'] has no {option}.",
                        hint="ConveyorBackend needs the server's URL and an API key.",
                        id="conveyor.E001",
                    )
                )
        return messages

    @property
    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = Client(self.url, self.api_key, timeout=self.timeout)
            return self._client

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if not _TYPE_NAME.fullmatch(task.module_path):
            raise InvalidTask(
                f"{task.module_path} cannot be a Conveyor job type: its dotted path must be "
                "lower-case letters, digits and underscores."
            )
        if not _QUEUE_NAME.fullmatch(task.queue_name):
            raise InvalidTask(
                f"Queue {task.queue_name!r}: Conveyor queue names are lower-case letters, "
                "digits, - and _."
            )

    # --- enqueue -------------------------------------------------------------------------------

    def submission(self, task: Task, args: Any, kwargs: Any) -> dict[str, Any]:
        """The job submission for ``task(*args, **kwargs)``: type, input and options."""
        try:
            input = {"args": normalize_json(list(args)), "kwargs": normalize_json(dict(kwargs))}
        except (TypeError, ValueError) as exc:
            raise InvalidTask(f"The arguments of {task.module_path} must be JSON: {exc}") from exc
        body: dict[str, Any] = {
            "type": task.module_path,
            "input": input,
            "priority": conveyor_priority(task.priority),
        }
        if task.run_after is not None:
            run_after = task.run_after
            if timezone.is_naive(run_after):
                run_after = timezone.make_aware(run_after)
            body["run_at"] = run_after.isoformat()
        return body

    def check_registered(self, task: Task, queues: Mapping[str, str]) -> None:
        """InvalidTask unless the server runs ``task`` on its ``queue_name``."""
        queue = queues.get(task.module_path)
        if queue is None:
            raise InvalidTask(
                f"Conveyor does not run {task.module_path}: its module is not in the server's "
                "CONVEYOR_TASK_MODULES."
            )
        if queue != task.queue_name:
            raise InvalidTask(
                f"Conveyor runs {task.module_path} on queue {queue!r}, not "
                f"{task.queue_name!r}: the queue is the one its @task names on the server."
            )

    def _registered_queues(self, name: str) -> dict[str, str]:
        stale = time.monotonic() - self._queues_read_at > self.job_types_ttl
        if stale or name not in self._queues:
            self._queues = {jt.name: jt.queue for jt in self.client.job_types()}
            self._queues_read_at = time.monotonic()
        return self._queues

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        body = self.submission(task, args, kwargs)
        self.check_registered(task, self._registered_queues(task.module_path))
        try:
            job = self.client.submit(body.pop("type"), body.pop("input"), **body)
        except (ValidationError, PayloadTooLarge) as exc:
            raise InvalidTask(f"Conveyor refused {task.module_path}: {exc}") from exc
        return self.to_result(job, task=task)

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        # An AsyncClient per call: an httpx.AsyncClient belongs to the event loop it was used
        # in, and a Django project may run several loops (async_to_sync, asyncio.run).
        self.validate_task(task)
        body = self.submission(task, args, kwargs)
        async with AsyncClient(self.url, self.api_key, timeout=self.timeout) as client:
            if (
                time.monotonic() - self._queues_read_at > self.job_types_ttl
                or task.module_path not in self._queues
            ):
                self._queues = {jt.name: jt.queue for jt in await client.job_types()}
                self._queues_read_at = time.monotonic()
            self.check_registered(task, self._queues)
            try:
                job = await client.submit(body.pop("type"), body.pop("input"), **body)
            except (ValidationError, PayloadTooLarge) as exc:
                raise InvalidTask(f"Conveyor refused {task.module_path}: {exc}") from exc
        return self.to_result(job, task=task)

    # --- results -------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        if not _JOB_ID.fullmatch(str(result_id)):
            raise TaskResultDoesNotExist(result_id)
        try:
            job = self.client.get(result_id)
        except NotFound:
            raise TaskResultDoesNotExist(result_id) from None
        return self.to_result(job)

    async def aget_result(self, result_id: str) -> TaskResult:
        if not _JOB_ID.fullmatch(str(result_id)):
            raise TaskResultDoesNotExist(result_id)
        async with AsyncClient(self.url, self.api_key, timeout=self.timeout) as client:
            try:
                job = await client.get(result_id)
            except NotFound:
                raise TaskResultDoesNotExist(result_id) from None
        return self.to_result(job)

    def task_of(self, job: Job) -> Task:
        """The project's ``Task`` that ``job`` runs; TaskResultDoesNotExist if it is none."""
        try:
            task = import_string(job.type)
        except ImportError:
            task = None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(
                f"{job.id} is a {job.type} job, not a task of this project"
            )
        return task

    def to_result(self, job: Job, *, task: Task | None = None) -> TaskResult:
        """``job`` as a ``TaskResult`` (the mappings of the module's docstring)."""
        task = task or self.task_of(job)
        raw_input = job.input if isinstance(job.input, dict) else {}
        result: TaskResult = TaskResult(
            task=task,
            id=job.id,
            status=STATUS[job.status],
            enqueued_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            last_attempted_at=job.started_at,
            args=list(raw_input.get("args", [])),
            kwargs=dict(raw_input.get("kwargs", {})),
            backend=self.alias,
            errors=self.errors_of(job),
            worker_ids=worker_ids(job.queue, job.attempts),
        )
        if job.status == "succeeded" and isinstance(job.result, dict):
            object.__setattr__(result, "_return_value", job.result.get("return_value"))
        return result

    @staticmethod
    def errors_of(job: Job) -> list[TaskError]:
        error = job.error
        if error is None:
            return []
        code, message, details = error.code, error.message, error.details
        if details.get("exception_class"):
            return [
                TaskError(
                    exception_class_path=str(details["exception_class"]),
                    traceback=str(details.get("traceback") or message),
                )
            ]
        kind = ConveyorJobCanceled if job.status == "canceled" else ConveyorJobFailed
        return [
            TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback=f"{code}: {message}",
            )
        ]
