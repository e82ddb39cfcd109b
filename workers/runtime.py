"""Running one job attempt inside a worker process.

``execute`` claims the job (a stale or duplicate message finds nothing to claim and is dropped),
runs its handler with a ``WorkerJobContext``, and records the outcome through the services. A
per-process heartbeat thread keeps the claim alive, brings cancel requests to the context, and
interrupts a handler that ignores a cancel request for longer than the grace period.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections, connection

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.registry import JobCanceled, PermanentError, RetryableError, get_job_type

logger = logging.getLogger("conveyor.worker")

RESULT_MAX_BYTES = 1024 * 1024


class JobInterrupted(JobCanceled):
    """Raised into a handler that ignored a cancel request (or lost its job) past the grace."""


class WorkerJobContext:
    """The ``JobContext`` a handler receives (see apps.jobs.registry.JobContext)."""

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


class Heartbeat:
    """One daemon thread per worker process, beating for the job the process is running.

    Jobs shorter than one interval never cost a heartbeat write: the claim itself stamped the
    first beat.
    """

    def __init__(self, interval: float, cancel_grace: float) -> None:
        self.interval = interval
        self.cancel_grace = cancel_grace
        self._current: tuple[Job, WorkerJobContext, float] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._interrupt: Callable[[], None] | None = None

    def watch(self, job: Job, ctx: WorkerJobContext, interrupt: Callable[[], None]) -> None:
        with self._lock:
            self._current = (job, ctx, time.monotonic())
            self._interrupt = interrupt
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="conveyor-heartbeat", daemon=True
            )
            self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self._current = None
            self._interrupt = None

    def _run(self) -> None:
        while True:
            time.sleep(self.interval / 2)
            with self._lock:
                current, interrupt = self._current, self._interrupt
            if current is None:
                continue
            job, ctx, since = current
            if time.monotonic() - since >= self.interval:
                self._beat(job, ctx)
            ctx.note_stop_request()
            if (
                ctx.stop_seen_at is not None
                and time.monotonic() - ctx.stop_seen_at > self.cancel_grace
                and interrupt is not None
            ):
                logger.warning("interrupting job %s: it ignored a cancel request", job.pk)
                with self._lock:
                    if self._current is current:
                        interrupt()
                        self._interrupt = None

    def _beat(self, job: Job, ctx: WorkerJobContext) -> None:
        try:
            state = services.job_heartbeat(job=job)
        except (DatabaseError, InterfaceError):
            logger.warning("heartbeat for job %s failed", job.pk, exc_info=True)
            return
        finally:
            # Beats are seconds apart and only for long jobs: holding a connection open for
            # them would cost every worker process a second database slot.
            connection.close()
        if state is None:
            ctx.lost = True
        elif state:
            ctx.cancel_flag = True


_heartbeat: Heartbeat | None = None
_interrupt_armed = threading.Event()


def _on_interrupt_signal(signum: int, frame: Any) -> None:
    if _interrupt_armed.is_set():
        _interrupt_armed.clear()
        raise JobInterrupted()


def _interrupt_main_thread() -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR2)


def _get_heartbeat() -> Heartbeat:
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = Heartbeat(
            interval=settings.JOB_HEARTBEAT_SECONDS, cancel_grace=settings.JOB_CANCEL_GRACE_SECONDS
        )
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR2, _on_interrupt_signal)
    return _heartbeat


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


def execute(job_id: str, *, worker: str = "", task_id: str = "") -> str:
    """Run one attempt of job ``job_id``. Returns what happened, for logs and tests."""
    job = services.job_start(job_id=job_id, worker=worker, task_id=task_id)
    if job is None:
        logger.info("job %s is not queued; dropping a stale or duplicate message", job_id)
        return "dropped"
    job_type = get_job_type(job.type)
    if job_type is None:
        # A worker deployed without this type (a rolling deploy, a missing module): retried,
        # so that a worker that knows the type can run it.
        message = f"this worker does not know job type {job.type!r}"
        return _finish(
            job,
            lambda: services.job_fail(
                job=job, code="unknown_job_type", message=message, retryable=True
            ),
        )
    ctx = WorkerJobContext(job)
    heartbeat = _get_heartbeat()
    outcome: Callable[[], Job | None]
    try:
        heartbeat.watch(job, ctx, _interrupt_main_thread)
        _interrupt_armed.set()
        try:
            result = job_type.handler(ctx, dict(job.input))
        finally:
            _interrupt_armed.clear()
            heartbeat.clear()
    except JobCanceled:
        job.cancel_requested = job.cancel_requested or ctx.cancel_flag
        if job.cancel_requested:
            outcome = lambda: services.job_finish_canceled(job=job)  # noqa: E731
        else:
            outcome = lambda: services.job_fail(  # noqa: E731
                job=job, code="canceled", message="the handler stopped itself", retryable=False
            )
    except PermanentError as exc:
        outcome = _failure(job, ctx, exc.code, exc.message, retryable=False)
    except SoftTimeLimitExceeded:
        message = f"the job ran over its timeout of {job.timeout_seconds}s"
        outcome = _failure(job, ctx, "timeout", message, retryable=job_type.retry_on_timeout)
    except RetryableError as exc:
        outcome = _failure(job, ctx, exc.code, exc.message, retryable=True)
    except Exception as exc:
        logger.exception("job %s (%s) raised", job.pk, job.type)
        outcome = _failure(job, ctx, "error", f"{type(exc).__name__}: {exc}", retryable=True)
    else:
        problem = _result_problem(result)
        if problem:
            outcome = _failure(job, ctx, "invalid_result", problem, retryable=False)
        else:
            outcome = lambda: services.job_succeed(job=job, result=result)  # noqa: E731
    return _finish(job, outcome)


def _finish(job: Job, outcome: Callable[[], Job | None]) -> str:
    finished = _with_db_retries(outcome, what=f"recording the outcome of job {job.pk}")
    if finished is None:
        logger.warning("job %s attempt %s lost its claim; outcome discarded", job.pk, job.attempts)
        return "lost"
    return str(finished.status)


def _failure(
    job: Job, ctx: WorkerJobContext, code: str, message: str, *, retryable: bool
) -> Callable[[], Job | None]:
    job.cancel_requested = job.cancel_requested or ctx.cancel_flag
    return lambda: services.job_fail(job=job, code=code, message=message, retryable=retryable)
