"""Celery tasks: thin wrappers that take ids from messages and call the runtime or services."""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import TimeLimitExceeded
from celery import Task

from apps.jobs import services
from apps.jobs.dispatch import RUN_JOB_TASK
from config.celery_app import app
from workers import runtime

logger = logging.getLogger("conveyor.worker")


class JobTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Called in the pool's parent process when a hard time limit killed the child: record
        # the timeout now rather than waiting for the heartbeat to go stale.
        if isinstance(exc, TimeLimitExceeded) and args:
            try:
                services.job_fail_by_task(
                    job_id=args[0],
                    task_id=task_id,
                    code="timeout",
                    message="the job ran over its timeout and was killed",
                )
            except Exception:
                logger.exception("recording the hard timeout of job %s failed", args[0])


@app.task(name=RUN_JOB_TASK, bind=True, base=JobTask, acks_late=True, ignore_result=True)
def run_job(self: Task, job_id: str) -> str:
    """Run one attempt of a job: claim it, run its handler, record the outcome."""
    return runtime.execute(job_id, worker=self.request.hostname or "", task_id=self.request.id or "")
