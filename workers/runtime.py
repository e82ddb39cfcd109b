"""Running jobs inside a worker process.

A wake-up message (``conveyor.run_jobs(queue)``, see apps/jobs/dispatch.py) makes the worker
claim queued jobs of its queue from the database, one at a time, highest priority first, and run
each: the handler gets a ``WorkerJobContext`` (workers/context.py), and the outcome is recorded
through the services. The worker keeps claiming until the queue is empty or its time budget is
spent; then, if it stopped early, it publishes one wake-up for the rest, so a long backlog never
holds one process and a warm shutdown never waits for more than one job.

Each process has one ``WorkerRuntime``: it owns the process's ``Interruption`` (an exception
raised inside the handler from another thread, workers/interruption.py) and the ``Watchdog``
that uses it (heartbeats, the soft and hard time limits, ignored cancel requests;
workers/watchdog.py). The webhook pool's loop is workers/webhook_drain.py.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections

from apps.core.context import bound_job
from apps.core.logs import sensitive_strings
from apps.jobs import services
from apps.jobs.dispatch import publish_wakeup_in, publish_wakeups
from apps.jobs.models import Job
from apps.jobs.registry import (
    JobCanceled,
    JobType,
    PermanentError,
    RetryableError,
    get_job_type,
)
from workers.context import JobTimeout, WorkerJobContext
from workers.interruption import Interruption
from workers.watchdog import Watchdog

logger = logging.getLogger("conveyor.worker")

RESULT_MAX_BYTES = 1024 * 1024


def _with_db_retries(operation: Callable[[], Any], *, what: str) -> Any:
    """Record an outcome even across a short database blip (failover, restart)."""
    delay = 0.5
    for attempt in range(4):
        try:
            return operation()
        except (DatabaseError, InterfaceError):
            if attempt == 3:
                raise
            logger.warning("%s failed; retrying in %.1fs", what, delay, exc_info=True)
            close_old_connections()
            time.sleep(delay)
            delay *= 2
    return None


def _result_problem(result: Any) -> str | None:
    if result is None:
        return None
    if not isinstance(result, dict):
        return f"the handler returned {type(result).__name__}, not a dict"
    try:
        size = len(orjson.dumps(result))
    except TypeError as exc:
        return f"the result is not JSON-serialisable: {exc}"
    if size > RESULT_MAX_BYTES:
        return f"the result is {size} bytes, over the {RESULT_MAX_BYTES}-byte limit"
    return None


def _failure(
    job: Job, ctx: WorkerJobContext | None, code: str, message: str, *, retryable: bool
) -> Callable[[], Job | None]:
    if ctx is not None:
        job.cancel_requested = job.cancel_requested or ctx.cancel_flag
    return lambda: services.job_fail(job=job, code=code, message=message, retryable=retryable)


def _finish(job: Job, outcome: Callable[[], Job | None]) -> str:
    finished = _with_db_retries(outcome, what=f"recording the outcome of job {job.pk}")
    if finished is None:
        logger.warning("job %s attempt %s lost its claim; outcome discarded", job.pk, job.attempts)
        return "lost"
    return str(finished.status)


class WorkerRuntime:
    """Runs claimed jobs in this process, one at a time (a pool process runs one handler, on
    its main thread), each watched by the process's watchdog."""

    def __init__(self) -> None:
        self.interruption = Interruption()
        self.watchdog = Watchdog(self.interruption)

    def run_claimed(self, job: Job) -> str:
        """Run one claimed (``running``) job and record its outcome. Returns the final status.

        Log lines and Sentry events of the attempt carry the job's id and the id of the request
        that submitted it (wake-up messages name no job, so the id comes from the row).
        """
        job_type = get_job_type(job.type)
        sensitive = (
            sensitive_strings(job.input, job_type.sensitive_input_fields)
            if job_type is not None and job_type.sensitive_input_fields
            else ()
        )
        with bound_job(job, sensitive):
            return self._run_claimed(job, job_type)

    def _run_claimed(self, job: Job, job_type: JobType | None) -> str:
        if job_type is None:
            # A worker deployed without this type (a rolling deploy, a missing module): retried,
            # so that a worker that knows the type can run it.
            message = f"this worker does not know job type {job.type!r}"
            return _finish(job, _failure(job, None, "unknown_job_type", message, retryable=True))
        ctx = WorkerJobContext(job)
        outcome: Callable[[], Job | None]
        try:
            interruptible = self.interruption.install()
            self.watchdog.watch(job, ctx, job_type, interruptible)
            try:
                with self.interruption.armed(interruptible):
                    result = job_type.handler(ctx, dict(job.input))
            finally:
                self.watchdog.clear()
        except JobCanceled:
            job.cancel_requested = job.cancel_requested or ctx.cancel_flag
            if job.cancel_requested:
                outcome = lambda: services.job_finish_canceled(job=job)  # noqa: E731
            else:
                message = "the handler stopped itself"
                outcome = _failure(job, ctx, "canceled", message, retryable=False)
        except PermanentError as exc:
            outcome = _failure(job, ctx, exc.code, exc.message, retryable=False)
        except (JobTimeout, SoftTimeLimitExceeded):
            message = f"the job ran over its timeout of {job.timeout_seconds}s"
            outcome = _failure(job, ctx, "timeout", message, retryable=job_type.retry_on_timeout)
        except RetryableError as exc:
            outcome = _failure(job, ctx, exc.code, exc.message, retryable=True)
        except Exception as exc:
            logger.exception("job %s (%s) raised", job.pk, job.type)
            message = f"{type(exc).__name__}: {exc}"
            outcome = _failure(job, ctx, "error", message, retryable=True)
        else:
            problem = _result_problem(result)
            if problem:
                outcome = _failure(job, ctx, "invalid_result", problem, retryable=False)
            else:
                outcome = lambda: services.job_succeed(job=job, result=result)  # noqa: E731
        return _finish(job, outcome)

    def execute(self, job_id: str, *, worker: str = "", task_id: str = "") -> str:
        """Claim one particular job and run it (tests, and tools that target a job)."""
        job = services.job_start(job_id=job_id, worker=worker, task_id=task_id)
        if job is None:
            logger.info("job %s is not queued; nothing to run", job_id)
            return "not_queued"
        return self.run_claimed(job)

    def run_queue(self, queue: str, *, worker: str = "", task_id: str = "") -> dict[str, int]:
        """Claim and run queued jobs of ``queue`` until it is empty or the budget is spent.

        Returns how many jobs ended in each status. When the budget ran out first, one wake-up
        is published for whatever is left, so other workers (or this one, later) carry on.
        """
        deadline = time.monotonic() + settings.WORKER_DRAIN_SECONDS
        outcomes: Counter[str] = Counter()
        for _ in range(settings.WORKER_DRAIN_MAX_JOBS):
            job = services.job_claim_next(queue=queue, worker=worker, task_id=task_id)
            if job is None:
                # Jobs that wait on a rate limit are woken when their window ends.
                wait = services.rate_limited_wait(queue)
                if wait is not None:
                    publish_wakeup_in(queue, wait)
                return dict(outcomes)
            outcomes[self.run_claimed(job)] += 1
            if time.monotonic() >= deadline:
                break
        publish_wakeups({queue: 1})
        return dict(outcomes)


@cache
def worker_runtime() -> WorkerRuntime:
    """This process's runtime (made on first use, after settings are loaded)."""
    return WorkerRuntime()


def execute(job_id: str, *, worker: str = "", task_id: str = "") -> str:
    """Claim one particular job and run it (tests, and tools that target a job)."""
    return worker_runtime().execute(job_id, worker=worker, task_id=task_id)


def run_queue(queue: str, *, worker: str = "", task_id: str = "") -> dict[str, int]:
    """Claim and run queued jobs of ``queue`` (see ``WorkerRuntime.run_queue``)."""
    return worker_runtime().run_queue(queue, worker=worker, task_id=task_id)
