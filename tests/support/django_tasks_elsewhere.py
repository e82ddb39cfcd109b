"""A ``@task`` that tests/support/django_tasks.py imports: not registered with that module."""

from __future__ import annotations

from django.tasks import task


@task
def imported_task() -> str:
    return "runs only if this module is listed itself"
