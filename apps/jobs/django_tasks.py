"""Django's tasks framework on Conveyor's pools: ``@task`` functions registered as job types.

A Django project that uses ``django.tasks`` with ``conveyor_client.django.ConveyorBackend``
submits a job per ``.enqueue()``. On this side, the ``@task`` functions (``django.tasks.Task``
objects) defined in the modules of ``settings.CONVEYOR_TASK_MODULES`` become job types, each named
by its dotted path (``Task.module_path``, e.g. ``shop.tasks.send_receipt``), on the queue of its
``queue_name``, with the input ``{"args": [...], "kwargs": {...}}``. Nothing else can run: a type
name that is the path of any other function is an unknown type (400), never imported on demand.

- The input is checked at submission against the function's signature (a missing or unexpected
  argument is 400 ``validation_error``), and must be JSON, as ``django.tasks`` requires.
- The return value, normalised to JSON as ``django.tasks`` does, is the job's result
  ``{"return_value": …}``; a value that is not JSON fails the job (``invalid_result``).
- An exception fails the attempt with code ``task_error``, message ``"<class path>: <message>"``
  and ``details`` ``{"exception_class": "<class path>", "traceback": "<the last 16 000 chars>"}``.
  It is a retryable error, but a task's job type allows one attempt unless the submission asks
  for more (``django.tasks`` has no retries of its own): re-running a task is the caller's choice.
- ``takes_context=True``: the first argument is a ``django.tasks.TaskContext`` whose
  ``task_result`` has the job's id, args, kwargs, status RUNNING and one worker id per attempt so
  far, so that ``context.attempt`` is the job's attempt number (1, 2, …).

docs/job-types.md, "Django tasks", is the guide.
"""

from __future__ import annotations

import inspect
import logging
import re
import traceback
from collections.abc import Iterable
from importlib import import_module
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ImproperlyConfigured
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask
from django.utils import timezone
from django.utils.json import normalize_json
from rest_framework import serializers

from apps.jobs.registry import (
    NAME_PATTERN,
    QUEUE_PATTERN,
    Handler,
    JobCanceled,
    JobContext,
    JobStopped,
    JobType,
    PermanentError,
    RetryableError,
    register,
)

logger = logging.getLogger("conveyor.worker")

TASK_ERROR_CODE = "task_error"
TRACEBACK_MAX_CHARS = 16_000
# A task's job type: one attempt unless the submission asks for more (max_attempts).
TASK_MAX_ATTEMPTS = 1
# What the worker raises inside a handler to stop it, and what a handler raises to say how it
# failed: never turned into a task_error.
_PASS_THROUGH = (JobStopped, JobCanceled, SoftTimeLimitExceeded, PermanentError, RetryableError)


def worker_ids(queue: str, attempts: int) -> list[str]:
    """``TaskResult.worker_ids`` for a job: the API names the pool that ran it, not the process,
    so one ``conveyor:<queue>`` per attempt (``TaskResult.attempts`` is their number)."""
    return [f"conveyor:{queue}"] * attempts


def exception_class_path(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


class ConveyorWorkerBackend(BaseTaskBackend):
    """The ``TASKS`` backend inside Conveyor's own processes. ``@task`` builds its ``Task`` with
    the backend of its alias and lets the backend validate it; this one accepts whatever the
    client's ``ConveyorBackend`` accepts (any queue, priority, run_after, coroutines) so that the
    tasks modules import here as they do in the client's project. Tasks are run by the pools,
    not enqueued from inside Conveyor: ``enqueue`` refuses."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = False
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.queues = set(params.get("QUEUES", []))  # empty: any queue

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        raise InvalidTask(
            "Tasks are not enqueued from inside Conveyor; submit a job through the API "
            "(conveyor_client) instead."
        )


def _task_input_serializer(task: Task) -> type[serializers.Serializer]:
    signature = inspect.signature(task.func)

    class TaskInput(serializers.Serializer):
        args = serializers.ListField(
            child=serializers.JSONField(allow_null=True),
            default=list,
            help_text="Positional arguments of the task function.",
        )
        kwargs = serializers.DictField(
            child=serializers.JSONField(allow_null=True),
            default=dict,
            help_text="Keyword arguments of the task function.",
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            args, kwargs = attrs.get("args", []), attrs.get("kwargs", {})
            if task.takes_context:
                if "context" in kwargs:
                    raise serializers.ValidationError(
                        {"kwargs": ["'context' is given by the worker, not by the caller."]}
                    )
                args = [None, *args]
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise serializers.ValidationError(
                    {"args": [f"The arguments do not fit {task.name}{signature}: {exc}."]}
                ) from None
            return attrs

    TaskInput.__name__ = TaskInput.__qualname__ = f"TaskInput_{task.name}"
    return TaskInput


def _context(task: Task, ctx: JobContext, args: list[Any], kwargs: dict[str, Any]) -> TaskContext:
    now = timezone.now()
    result: TaskResult = TaskResult(
        task=task,
        id=ctx.job_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=[],
        worker_ids=worker_ids(task.queue_name, ctx.attempt),
    )
    return TaskContext(task_result=result)


def _handler(task: Task) -> Handler:
    def run_task(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
        args, kwargs = list(input.get("args", [])), dict(input.get("kwargs", {}))
        try:
            if task.takes_context:
                value = task.call(_context(task, ctx, args, kwargs), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            path = exception_class_path(exc)
            logger.info("task %s of job %s raised %s", task.module_path, ctx.job_id, path)
            raise RetryableError(
                f"{path}: {exc}",
                code=TASK_ERROR_CODE,
                details={
                    "exception_class": path,
                    "traceback": "".join(traceback.format_exception(exc))[-TRACEBACK_MAX_CHARS:],
                },
            ) from exc
        try:
            return {"return_value": normalize_json(value)}
        except (TypeError, ValueError) as exc:
            raise PermanentError(
                f"the return value of {task.module_path} is not JSON: {exc}",
                code="invalid_result",
            ) from exc

    run_task.__name__ = run_task.__qualname__ = f"run_{task.name}"
    return run_task


def tasks_of(module_name: str) -> list[Task]:
    """The ``@task`` functions defined in ``module_name`` (not those it imports from elsewhere:
    only the listed modules' own functions can run)."""
    module = import_module(module_name)
    return [
        value
        for value in vars(module).values()
        if isinstance(value, Task) and value.func.__module__ == module.__name__
    ]


def job_type_for(task: Task) -> JobType:
    name = task.module_path
    if not re.fullmatch(NAME_PATTERN, name):
        raise ImproperlyConfigured(
            f"The task {name} cannot be a Conveyor job type: its dotted path must be "
            "lower-case letters, digits and underscores."
        )
    if not re.fullmatch(QUEUE_PATTERN, task.queue_name):
        raise ImproperlyConfigured(
            f"The task {name} names the queue {task.queue_name!r}; Conveyor queue names are "
            "lower-case letters, digits, - and _."
        )
    return JobType(
        name=name,
        handler=_handler(task),
        input_serializer=_task_input_serializer(task),
        description=(task.func.__doc__ or "").strip() or f"The Django task {name}.",
        queue=task.queue_name,
        max_attempts=TASK_MAX_ATTEMPTS,
    )


_registered: dict[str, Task] = {}


def register_task_modules(modules: Iterable[str]) -> list[str]:
    """Register the ``@task`` functions of ``modules`` as job types; their names. Registering a
    module twice (a second ``ready()``) is a no-op."""
    names = []
    for module_name in modules:
        for task in tasks_of(module_name):
            name = task.module_path
            if name not in _registered:
                register(job_type_for(task))
                _registered[name] = task
            names.append(name)
    return names
