"""Running jobs inside a worker process.

A wake-up message (``conveyor.run_jobs(queue)``, see apps/jobs/dispatch.py) makes the worker
claim queued jobs of its queue from the database, one at a time, highest priority first, and run
each: the handler gets a ``WorkerJobContext``, and the outcome is recorded through the services.
The worker keeps claiming until the queue is empty or its time budget is spent; then, if it
stopped early, it publishes one wake-up for the rest, so a long backlog never holds one process
and a warm shutdown never waits for more than one job.

A per-process watchdog thread looks after the job being run:

- it stamps the job's heartbeat (jobs shorter than one interval never cost a write: the claim
  stamped the first one), and learns of cancel requests from it;
- at the job's ``timeout_seconds`` it raises ``JobTimeout`` inside the handler (the soft limit);
- a handler that ignores a cancel request for ``JOB_CANCEL_GRACE_SECONDS`` gets
  ``JobInterrupted`` raised inside it;
- a handler still running ``JOB_TIMEOUT_GRACE_SECONDS`` after its soft limit (stuck in C code,
  or swallowing exceptions) is stopped hard: the watchdog records the timeout and kills the
  process, which the pool replaces.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections, connection

from apps.core.context import bound_job
from apps.core.logs import sensitive_strings
from apps.jobs import services
from apps.jobs.dispatch import publish_wakeups
from apps.jobs.models import Job
from apps.jobs.registry import (
    JobCanceled,
    JobType,
    PermanentError,
    RetryableError,
    get_job_type,
)

logger = logging.getLogger("conveyor.worker")

RESULT_MAX_BYTES = 1024 * 1024


class JobTimeout(Exception):
    """Raised inside a handler when its job reaches ``timeout_seconds`` (the soft limit)."""


class JobInterrupted(JobCanceled):
    """Raised inside a handler that ignored a cancel request (or lost its claim) too long."""


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


# --- Interrupting the handler -----------------------------------------------------------------
# The watchdog runs on its own thread; Python delivers signals to the main thread, where the
# handler runs, and a signal handler that raises turns a blocking sleep or read into an exception
# at once (PEP 475).

_interrupt_lock = threading.Lock()
_armed = False
_pending: type[BaseException] | None = None


def _on_interrupt_signal(signum: int, frame: Any) -> None:
    global _pending
    with _interrupt_lock:
        exc, _pending = (_pending if _armed else None), None
    if exc is not None:
        raise exc()


def _install_interrupt_handler() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGUSR2) is not _on_interrupt_signal:
        signal.signal(signal.SIGUSR2, _on_interrupt_signal)
    return True


def _arm(armed: bool) -> None:
    global _armed, _pending
    with _interrupt_lock:
        _armed, _pending = armed, None


def _interrupt(exc: type[BaseException]) -> None:
    global _pending
    with _interrupt_lock:
        if not _armed:
            return
        _pending = exc
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR2)


# --- The watchdog -----------------------------------------------------------------------------


class _Watch:
    def __init__(self, job: Job, ctx: WorkerJobContext, job_type: JobType, interruptible: bool):
        now = time.monotonic()
        self.job, self.ctx, self.job_type = job, ctx, job_type
        self.interruptible = interruptible
        self.started = now
        self.last_beat = now
        self.soft_at = now + job.timeout_seconds
        self.hard_at = self.soft_at + settings.JOB_TIMEOUT_GRACE_SECONDS
        self.soft_fired = False
        self.cancel_fired = False


class Watchdog:
    """One daemon thread per worker process, watching the job that the process is running."""

    def __init__(self) -> None:
        self.interval = settings.JOB_HEARTBEAT_SECONDS
        self.cancel_grace = settings.JOB_CANCEL_GRACE_SECONDS
        self._watch: _Watch | None = None
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(
        self, job: Job, ctx: WorkerJobContext, job_type: JobType, interruptible: bool
    ) -> None:
        with self._lock:
            self._watch = _Watch(job, ctx, job_type, interruptible)
        self._changed.set()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="conveyor-watchdog", daemon=True)
            self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self._watch = None
        self._changed.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                watch = self._watch
            if watch is None:
                self._changed.wait()
                self._changed.clear()
                continue
            now = time.monotonic()
            wake_at = min(
                watch.last_beat + self.interval,
                watch.hard_at if watch.soft_fired else watch.soft_at,
                now + min(self.interval / 2, 0.25),  # notice cancel flags promptly
            )
            if self._changed.wait(max(0.0, wake_at - now)):
                self._changed.clear()
                continue
            with self._lock:
                if self._watch is not watch:
                    continue
            try:
                self._check(watch)
            except Exception:
                logger.exception("watchdog check for job %s failed", watch.job.pk)

    def _check(self, watch: _Watch) -> None:
        now = time.monotonic()
        if now - watch.last_beat >= self.interval:
            watch.last_beat = now
            self._beat(watch)
        ctx = watch.ctx
        ctx.note_stop_request()
        if now >= watch.hard_at:
            self._kill(watch)
        elif now >= watch.soft_at and not watch.soft_fired:
            watch.soft_fired = True
            logger.warning(
                "job %s reached its timeout of %ss", watch.job.pk, watch.job.timeout_seconds
            )
            if watch.interruptible:
                _interrupt(JobTimeout)
        elif (
            ctx.stop_seen_at is not None
            and now - ctx.stop_seen_at > self.cancel_grace
            and not watch.cancel_fired
        ):
            watch.cancel_fired = True
            logger.warning("interrupting job %s: it ignored a cancel request", watch.job.pk)
            if watch.interruptible:
                _interrupt(JobInterrupted)

    def _beat(self, watch: _Watch) -> None:
        try:
            state = services.job_heartbeat(job=watch.job)
        except (DatabaseError, InterfaceError):
            logger.warning("heartbeat for job %s failed", watch.job.pk, exc_info=True)
            return
        finally:
            # Beats are seconds apart and only for long jobs: holding a connection open for
            # them would cost every worker process a second database slot.
            connection.close()
        if state is None:
            watch.ctx.lost = True
        elif state:
            watch.ctx.cancel_flag = True

    def _kill(self, watch: _Watch) -> None:
        """The handler ignored its soft limit for the whole grace: record, then stop hard."""
        job = watch.job
        job.cancel_requested = job.cancel_requested or watch.ctx.cancel_flag
        logger.error(
            "job %s still running %ss after its timeout: killing its process",
            job.pk,
            settings.JOB_TIMEOUT_GRACE_SECONDS,
        )
        try:
            services.job_fail(
                job=job,
                code="timeout",
                message=f"the job ran over its timeout of {job.timeout_seconds}s and was killed",
                retryable=watch.job_type.retry_on_timeout,
            )
        finally:
            connection.close()
            os.kill(os.getpid(), signal.SIGKILL)


_watchdog: Watchdog | None = None


def _get_watchdog() -> Watchdog:
    global _watchdog
    if _watchdog is None:
        _watchdog = Watchdog()
    return _watchdog


# --- Running jobs -----------------------------------------------------------------------------


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


def run_claimed(job: Job) -> str:
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
        return _run_claimed(job, job_type)


def _run_claimed(job: Job, job_type: JobType | None) -> str:
    if job_type is None:
        # A worker deployed without this type (a rolling deploy, a missing module): retried,
        # so that a worker that knows the type can run it.
        message = f"this worker does not know job type {job.type!r}"
        return _finish(job, _failure(job, None, "unknown_job_type", message, retryable=True))
    ctx = WorkerJobContext(job)
    watchdog = _get_watchdog()
    outcome: Callable[[], Job | None]
    try:
        interruptible = _install_interrupt_handler()
        watchdog.watch(job, ctx, job_type, interruptible)
        _arm(interruptible)
        try:
            result = job_type.handler(ctx, dict(job.input))
        finally:
            _arm(False)
            watchdog.clear()
    except JobCanceled:
        job.cancel_requested = job.cancel_requested or ctx.cancel_flag
        if job.cancel_requested:
            outcome = lambda: services.job_finish_canceled(job=job)  # noqa: E731
        else:
            outcome = _failure(job, ctx, "canceled", "the handler stopped itself", retryable=False)
    except PermanentError as exc:
        outcome = _failure(job, ctx, exc.code, exc.message, retryable=False)
    except (JobTimeout, SoftTimeLimitExceeded):
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


def execute(job_id: str, *, worker: str = "", task_id: str = "") -> str:
    """Claim one particular job and run it (tests, and tools that target a job)."""
    job = services.job_start(job_id=job_id, worker=worker, task_id=task_id)
    if job is None:
        logger.info("job %s is not queued; nothing to run", job_id)
        return "not_queued"
    return run_claimed(job)


def run_queue(queue: str, *, worker: str = "", task_id: str = "") -> dict[str, int]:
    """Claim and run queued jobs of ``queue`` until it is empty or the budget is spent.

    Returns how many jobs ended in each status. When the budget ran out first, one wake-up is
    published for whatever is left, so other workers (or this one, later) carry on.
    """
    deadline = time.monotonic() + settings.WORKER_DRAIN_SECONDS
    outcomes: Counter[str] = Counter()
    for _ in range(settings.WORKER_DRAIN_MAX_JOBS):
        job = services.job_claim_next(queue=queue, worker=worker, task_id=task_id)
        if job is None:
            return dict(outcomes)
        outcomes[run_claimed(job)] += 1
        if time.monotonic() >= deadline:
            break
    publish_wakeups({queue: 1})
    return dict(outcomes)


def run_deliveries() -> dict[str, int]:
    """Send due webhook deliveries until none is due or the budget is spent (then hand over)."""
    from apps.webhooks.services import WEBHOOKS_QUEUE, delivery_attempt, delivery_claim_next

    deadline = time.monotonic() + settings.WORKER_DRAIN_SECONDS
    outcomes: Counter[str] = Counter()
    while True:
        delivery = delivery_claim_next()
        if delivery is None:
            return dict(outcomes)
        outcomes[delivery_attempt(delivery)] += 1
        if time.monotonic() >= deadline:
            publish_wakeups({WEBHOOKS_QUEUE: 1})
            return dict(outcomes)
