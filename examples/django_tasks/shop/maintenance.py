"""A task the server does not list in CONVEYOR_TASK_MODULES: enqueueing it is refused."""

from django.tasks import task


@task
def purge_cache() -> None:
    """Never runs on Conveyor."""
