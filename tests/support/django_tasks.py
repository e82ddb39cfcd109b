"""Django ``@task`` functions for the tests of apps/jobs/django_tasks.py (registered by the tests'
fixture, not by the settings)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from django.tasks import TaskContext, task

from tests.support.django_tasks_elsewhere import imported_task  # noqa: F401 - not registered


class Declined(Exception):
    pass


@task
def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


@task
def decline(reason: str) -> None:
    raise Declined(f"card declined: {reason}")


@task
def when() -> datetime:
    return datetime(2026, 1, 1)  # not JSON


@task(takes_context=True)
def which_attempt(context: TaskContext, label: str) -> dict[str, object]:
    return {"label": label, "id": context.task_result.id, "attempt": context.attempt}


@task(queue_name="heavy")
async def slow_echo(value: object) -> object:
    await asyncio.sleep(0)
    return value


def not_a_task() -> str:
    return "never run through Conveyor"
