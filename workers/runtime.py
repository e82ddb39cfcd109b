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
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import orjson
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections
from django.utils import timezone

from apps.core.context import bound_job
from apps.core.logs import sensitive_strings
from apps.jobs import services
from apps.jobs.dispatch import publish_wakeup_in, publish_wakeups
from apps.jobs.models import Job, JobStatus
from apps.jobs.registry import (
    JobCanceled,
    JobType,
    PermanentError,
    RetryableError,
    get_job_type,
)
from apps.jobs.services import Outcome
from workers.context import JobTimeout, WorkerJobContext
from workers.interruption import Interruption
from workers.watchdog import Watchdog

logger = logging.getLogger("conveyor.worker")

RESULT_MAX_BYTES = 1024 * 1024


# A transaction PostgreSQL aborted to break a deadlock or a serialization conflict: rolled back
# whole, so the same operation is tried again at once (the other side has gone on).
_CONFLICTS = frozenset({"40P01", "40001"})


def _conflict(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) in _CONFLICTS


def _with_db_retries(operation: Callable[[], Any], *, what: str) -> Any:
    """Record an outcome even across a short database blip (failover, restart) or a
    transaction aborted as a deadlock's victim. ``operation`` is one transaction: when it
    raises, none of it was committed, and it is run again with the same arguments."""
    delay = 0.5
    for attempt in range(4):
        try:
            return operation()
        except (DatabaseError, InterfaceError) as exc:
            if attempt == 3:
                raise
            if _conflict(exc):
                logger.warning("%s was aborted (%s); retrying", what, exc.__cause__.sqlstate)  # type: ignore[union-attr]
                continue
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
    job: Job,
    ctx: WorkerJobContext | None,
    code: str,
    message: str,
    *,
    retryable: bool,
    details: dict[str, Any] | None = None,
) -> Outcome:
    if ctx is not None:
        job.cancel_requested = job.cancel_requested or ctx.cancel_flag
    return Outcome(
        job, JobStatus.FAILED, code=code, message=message, retryable=retryable, details=details
    )


def _final_status(job: Job, recorded: Job | None) -> str:
    if recorded is None:
        logger.warning("job %s attempt %s lost its claim; outcome discarded", job.pk, job.attempts)
        return "lost"
    return str(recorded.status)


class _Estimates:
    """How long jobs took in this process lately (moving averages): per queue, a job's whole
    turn (context, watchdog, handler, outcome), which sizes a claim; per job type, its handler,
    which tells whether the next job is worth waiting for."""

    WEIGHT = 0.2

    def __init__(self) -> None:
        self.by_queue: dict[str, float] = {}
        self.by_type: dict[str, float] = {}
        self.last_claim: dict[str, int] = {}

    def note(self, table: dict[str, float], name: str, seconds: float) -> None:
        known = table.get(name)
        table[name] = seconds if known is None else known + self.WEIGHT * (seconds - known)

    def batch_size(self, queue: str, most: int) -> int:
        """Jobs to claim at once: as many as run within WORKER_BATCH_RUN_SECONDS, one at a time
        for a queue whose jobs are slow or not yet seen here; and at most twice what the last
        claim of the queue that found any found, so that a shallow queue costs few claims that
        find nothing (a deep one is reached in a few rounds: 1, 2, 4, … 32)."""
        mean = self.by_queue.get(queue)
        if mean is None:
            return 1
        fits = int(settings.WORKER_BATCH_RUN_SECONDS / max(mean, 1e-6))
        deep = 2 * self.last_claim.get(queue, 0)
        return max(1, min(settings.WORKER_CLAIM_BATCH_MAX, most, fits, deep))

    def slow(self, job: Job) -> bool:
        """Whether ``job`` may run longer than the grouping delay (unknown types may)."""
        mean = self.by_type.get(job.type)
        return mean is None or mean > settings.WORKER_FLUSH_DELAY_SECONDS


class WorkerRuntime:
    """Runs claimed jobs in this process, one at a time (a pool process runs one handler, on
    its main thread), each watched by the process's watchdog.

    What the process holds, under ``lock`` (the watchdog thread reads and empties it too):
    ``held``, jobs claimed and not yet started, in claim order; ``running``, the job whose
    handler runs; ``pending``, outcomes not yet recorded. All of them are ``running`` rows whose
    heartbeat the watchdog stamps (``owned``), so none is taken back by the maintenance loop
    while this process lives, and all are taken back if it dies.
    """

    def __init__(self) -> None:
        self.interruption = Interruption()
        self.watchdog = Watchdog(self.interruption, self)
        self.estimates = _Estimates()
        self.lock = threading.Lock()
        self.held: deque[Job] = deque()
        self.running: Job | None = None
        self.running_since = 0.0
        self.pending: list[Outcome] = []
        self.pending_since = 0.0
        self.releasing = False  # a pending outcome's job has dependents
        self.finished: Counter[str] = Counter()

    # --- one job ----------------------------------------------------------------------------

    def run_claimed(self, job: Job) -> str:
        """Run one claimed (``running``) job and record its outcome. Returns the final status."""
        outcome = self._attempt(job)
        recorded = _with_db_retries(
            lambda: services.job_record(outcome), what=f"recording the outcome of job {job.pk}"
        )
        return _final_status(job, recorded)

    def _attempt(self, job: Job) -> Outcome:
        """Run the handler of a claimed job: its outcome, not yet recorded.

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
            return self._run_handler(job, job_type)

    def _run_handler(self, job: Job, job_type: JobType | None) -> Outcome:
        if job_type is None:
            # A worker deployed without this type (a rolling deploy, a missing module): retried,
            # so that a worker that knows the type can run it.
            message = f"this worker does not know job type {job.type!r}"
            return _failure(job, None, "unknown_job_type", message, retryable=True)
        ctx = WorkerJobContext(job)
        began = time.perf_counter()
        try:
            interruptible = self.interruption.install()
            self.watchdog.watch(job, ctx, job_type, interruptible)
            try:
                with self.interruption.armed(interruptible):
                    result = job_type.handler(ctx, dict(job.input))
            finally:
                self.watchdog.clear()
                self.estimates.note(self.estimates.by_type, job.type, time.perf_counter() - began)
        except JobCanceled:
            job.cancel_requested = job.cancel_requested or ctx.cancel_flag
            if job.cancel_requested:
                return Outcome(job, JobStatus.CANCELED)
            return _failure(job, ctx, "canceled", "the handler stopped itself", retryable=False)
        except PermanentError as exc:
            return _failure(job, ctx, exc.code, exc.message, retryable=False, details=exc.details)
        except (JobTimeout, SoftTimeLimitExceeded):
            message = f"the job ran over its timeout of {job.timeout_seconds}s"
            return _failure(job, ctx, "timeout", message, retryable=job_type.retry_on_timeout)
        except RetryableError as exc:
            return _failure(job, ctx, exc.code, exc.message, retryable=True, details=exc.details)
        except Exception as exc:
            logger.exception("job %s (%s) raised", job.pk, job.type)
            return _failure(job, ctx, "error", f"{type(exc).__name__}: {exc}", retryable=True)
        problem = _result_problem(result)
        if problem:
            return _failure(job, ctx, "invalid_result", problem, retryable=False)
        return Outcome(job, JobStatus.SUCCEEDED, result=result)

    def execute(self, job_id: str, *, worker: str = "", task_id: str = "") -> str:
        """Claim one particular job and run it (tests, and tools that target a job)."""
        job = services.job_start(job_id=job_id, worker=worker, task_id=task_id)
        if job is None:
            logger.info("job %s is not queued; nothing to run", job_id)
            return "not_queued"
        return self.run_claimed(job)

    # --- a queue: claims and outcomes in groups ----------------------------------------------

    def owned(self) -> list[Job]:
        """Every job this process holds: claimed, running, or finished and not yet recorded."""
        with self.lock:
            jobs = [*self.held, *(outcome.job for outcome in self.pending)]
            if self.running is not None:
                jobs.append(self.running)
        return jobs

    def flush(
        self, *, claim: services.ClaimRequest | None = None, give_back: bool = False
    ) -> list[Job]:
        """Record the pending outcomes (and give back the unstarted jobs when ``give_back``) in
        one transaction, together with the claim of up to ``claim.size`` more jobs, which join
        ``held``. Returns the claimed jobs. Safe from the watchdog thread: what it writes is
        taken out of ``pending``/``held`` under the lock first."""
        with self.lock:
            outcomes, self.pending = self.pending, []
            self.releasing = False
            unstarted = list(self.held) if give_back else []
            if give_back:
                self.held.clear()
        if not outcomes and not unstarted and claim is None:
            return []
        try:
            recorded, claimed = _with_db_retries(
                lambda: services.jobs_record_and_claim(
                    outcomes=outcomes, give_back=unstarted, claim=claim
                ),
                what=f"recording {len(outcomes)} outcomes",
            )
        except BaseException:
            with self.lock:
                # Still ours and still running: recorded by the next flush, or (if this process
                # dies first) taken back by the maintenance loop. Jobs handed to a give-back are
                # never run here again (the give-back may have committed unseen).
                self.pending[:0] = outcomes
                self.releasing = any(o.job.has_dependents for o in self.pending)
            raise
        with self.lock:
            for outcome, job in zip(outcomes, recorded, strict=True):
                self.finished[_final_status(outcome.job, job)] += 1
            self.held.extend(claimed)
        return claimed

    def relieve(self, now: float) -> bool:
        """Called by the watchdog while a handler runs: outcomes pending longer than
        WORKER_FLUSH_DELAY_SECONDS are recorded, and jobs claimed behind a handler that has run
        WORKER_HOLD_SECONDS are given back for other processes to start."""
        with self.lock:
            if self.running is None:
                return False
            ran = now - self.running_since
            late = bool(self.pending) and now - self.pending_since >= (
                settings.WORKER_FLUSH_DELAY_SECONDS
            )
            stuck = bool(self.held) and ran >= settings.WORKER_HOLD_SECONDS
        if late or stuck:
            self.flush(give_back=stuck)
        return late or stuck

    def _next(self) -> Job | None:
        with self.lock:
            if not self.held:
                return None
            job = self.held.popleft()
            self.running, self.running_since = job, time.monotonic()
            pending_for = self.running_since - self.pending_since if self.pending else 0.0
        if self.pending and (
            pending_for >= settings.WORKER_FLUSH_DELAY_SECONDS
            or self.estimates.slow(job)
            or self.releasing
        ):
            # Never make finished jobs wait on one that may take a while, nor the dependents a
            # success releases wait on the grouping delay.
            self.flush()
        return job

    def relief_due(self) -> float | None:
        """When ``relieve`` will have something to do for the running handler (monotonic)."""
        with self.lock:
            if self.running is None:
                return None
            due = []
            if self.pending:
                due.append(self.pending_since + settings.WORKER_FLUSH_DELAY_SECONDS)
            if self.held:
                due.append(self.running_since + settings.WORKER_HOLD_SECONDS)
        return min(due) if due else None

    def _done(self, outcome: Outcome) -> None:
        outcome = replace(outcome, at=timezone.now())
        with self.lock:
            if not self.pending:
                self.pending_since = time.monotonic()
            self.pending.append(outcome)
            # Other jobs wait for this one: recorded before the next job starts.
            self.releasing = self.releasing or outcome.job.has_dependents
            self.running = None

    def run_queue(self, queue: str, *, worker: str = "", task_id: str = "") -> dict[str, int]:
        """Claim and run queued jobs of ``queue`` until it is empty or the budget is spent.

        Claims take several jobs at once when this queue's jobs are short (``_Estimates``), and
        outcomes are recorded in groups with the next claim (``flush``). Returns how many jobs
        ended in each status. When the budget ran out first, one wake-up is published for
        whatever is left, so other workers (or this one, later) carry on.
        """
        deadline = time.monotonic() + settings.WORKER_DRAIN_SECONDS
        budget = settings.WORKER_DRAIN_MAX_JOBS
        ran = 0
        try:
            while True:
                job = self._next()
                if job is None:
                    if ran >= budget or time.monotonic() >= deadline:
                        break
                    size = self.estimates.batch_size(queue, budget - ran)
                    claim = services.ClaimRequest(queue, size, worker, task_id)
                    claimed = self.flush(claim=claim)
                    if not claimed:
                        # Jobs that wait on a rate limit are woken when their window ends.
                        wait = services.rate_limited_wait(queue)
                        if wait is not None:
                            publish_wakeup_in(queue, wait)
                        return self._tally()
                    self.estimates.last_claim[queue] = len(claimed)
                    continue
                began = time.perf_counter()
                self._done(self._attempt(job))
                self.estimates.note(self.estimates.by_queue, queue, time.perf_counter() - began)
                ran += 1
        finally:
            # Whatever ends the run (the budget, an error): record what finished, give back
            # what never started.
            self.flush(give_back=True)
        publish_wakeups({queue: 1})
        return self._tally()

    def _tally(self) -> dict[str, int]:
        with self.lock:
            tally, self.finished = dict(self.finished), Counter()
        return tally


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
