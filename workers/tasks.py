"""Celery tasks: thin wrappers that take ids from messages and call the runtime or services."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from billiard.exceptions import TimeLimitExceeded
from celery import Task
from django.conf import settings

from apps.jobs import maintenance, services
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
    return runtime.execute(
        job_id, worker=self.request.hostname or "", task_id=self.request.id or ""
    )


# --- Maintenance (the scheduler process: beat + a worker on the maintenance queue) -------------


@app.task(name="conveyor.maintenance.promote_due", ignore_result=True)
def promote_due() -> int:
    """Queue scheduled and retrying jobs whose time has come."""
    return maintenance.jobs_promote_due()


@app.task(name="conveyor.maintenance.recover_stale", ignore_result=True)
def recover_stale() -> int:
    """Take back running jobs whose worker stopped heartbeating."""
    return maintenance.jobs_recover_stale(
        heartbeat_timeout=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS,
        grace=settings.JOB_TIMEOUT_GRACE_SECONDS,
    )


@app.task(name="conveyor.maintenance.republish_lost", ignore_result=True)
def republish_lost() -> int:
    """Publish again queued jobs whose broker message went missing."""
    return maintenance.jobs_republish_lost(min_age=settings.JOB_REPUBLISH_AFTER_SECONDS)


@app.task(name="conveyor.maintenance.purge_finished", ignore_result=True)
def purge_finished() -> int:
    """Delete finished jobs past the retention period, in bounded batches."""
    return maintenance.jobs_purge_finished(older_than=timedelta(days=settings.JOB_RETENTION_DAYS))
