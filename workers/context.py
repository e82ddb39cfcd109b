"""What a handler sees of the worker: its ``JobContext`` and the exceptions raised inside it."""

from __future__ import annotations

import time

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.registry import JobCanceled, JobStopped


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

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def attempt(self) -> int:
        return self._job.attempts

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
