"""What a handler sees of the worker: its ``JobContext`` and the exceptions raised inside it."""

from __future__ import annotations

import time
from typing import Any

import orjson
from django.conf import settings
from django.db import connections

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.registry import JobCanceled, JobStopped, PermanentError

# The results of a job's dependencies in one query, with their stored size (the whole set is
# refused past DEPENDENCY_RESULTS_MAX_BYTES rather than loaded).
_DEPENDENCY_RESULTS = (
    "SELECT d.id, CASE WHEN d.total <= %(limit)s THEN d.result END, d.total FROM ("
    "SELECT j.id, j.result, sum(pg_column_size(j.result)) OVER () AS total "
    "FROM {table} j WHERE j.id = ANY(%(ids)s::uuid[])) d"
)


def load_dependency_results(job: Job) -> dict[str, Any] | None:
    """{dependency id: result} of ``job``, or None when they are over the size limit."""
    if not job.depends_on:
        return {}
    limit = settings.DEPENDENCY_RESULTS_MAX_BYTES
    with connections["default"].cursor() as cursor:
        table = connections["default"].ops.quote_name(Job._meta.db_table)
        cursor.execute(
            _DEPENDENCY_RESULTS.format(table=table), {"ids": list(job.depends_on), "limit": limit}
        )
        rows = cursor.fetchall()
    if rows and rows[0][2] is not None and rows[0][2] > limit:
        return None
    # Django reads jsonb as text and leaves decoding to the field.
    return {
        str(row[0]): orjson.loads(row[1]) if isinstance(row[1], str | bytes) else row[1]
        for row in rows
    }


class JobTimeout(JobStopped):
    """Raised inside a handler when its job reaches ``timeout_seconds`` (the soft limit)."""


class JobInterrupted(JobCanceled):
    """Raised inside a handler that ignored a cancel request (or lost its claim) too long."""


class WorkerJobContext:
    """The ``JobContext`` a handler receives (see apps.jobs.registry.JobContext).

    The watchdog (workers/watchdog.py) writes ``cancel_flag`` and ``lost`` from its own thread
    when a heartbeat learns of a cancel request or a lost claim; each is a single assignment.
    """

    def __init__(self, job: Job) -> None:
        self._job = job
        self._job_id = str(job.pk)
        self.cancel_flag = job.cancel_requested
        self.lost = False
        self.stop_seen_at: float | None = None
        # Loaded once, as the attempt starts (one query, none without dependencies).
        self._dependency_results = load_dependency_results(job)

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def attempt(self) -> int:
        return self._job.attempts

    @property
    def dependency_results(self) -> dict[str, Any]:
        if self._dependency_results is None:
            raise PermanentError(
                "the results of its dependencies are over DEPENDENCY_RESULTS_MAX_BYTES",
                code="dependency_results_too_large",
            )
        return self._dependency_results

    def report_progress(self, percent: int, message: str = "") -> None:
        state = services.job_report_progress(job=self._job, percent=percent, message=message)
        if state is None:
            self.lost = True
        elif state:
            self.cancel_flag = True

    def cancel_requested(self) -> bool:
        return self.cancel_flag or self.lost

    def note_stop_request(self) -> None:
        if self.stop_seen_at is None and self.cancel_requested():
            self.stop_seen_at = time.monotonic()
