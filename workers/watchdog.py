"""The watchdog: one daemon thread per worker process, looking after the job being run.

- it stamps the heartbeat of every job the process holds (the running one, the ones claimed
  with it and not yet started, the finished ones whose outcome is not yet recorded: one
  statement for all), and learns of cancel requests from it; jobs shorter than one interval
  never cost a write (the claim stamped the first one);
- while a handler runs, it records outcomes that have waited WORKER_FLUSH_DELAY_SECONDS and
  gives back the jobs claimed behind a handler that has run WORKER_HOLD_SECONDS
  (``WorkerRuntime.relieve``), so a long job holds back neither;
- at the job's ``timeout_seconds`` it raises ``JobTimeout`` inside the handler (the soft limit);
- a handler that ignores a cancel request for ``JOB_CANCEL_GRACE_SECONDS`` gets
  ``JobInterrupted`` raised inside it;
- a handler still running ``JOB_TIMEOUT_GRACE_SECONDS`` after its soft limit (stuck in C code,
  or swallowing exceptions) is stopped hard: the watchdog records the timeout and kills the
  process, which the pool replaces.

Exceptions reach the handler through the runtime's ``Interruption`` (workers/interruption.py).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.registry import JobType
from workers.context import JobInterrupted, JobTimeout, WorkerJobContext
from workers.interruption import Interruption

logger = logging.getLogger("conveyor.worker")


class Holder(Protocol):
    """What the watchdog needs of the runtime (workers/runtime.py)."""

    def owned(self) -> list[Job]: ...

    def relief_due(self) -> float | None: ...

    def relieve(self, now: float) -> bool: ...

    def flush(self, *, give_back: bool = False) -> list[Job]: ...


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
    """Watches one handler at a time (``watch`` … ``clear``) from a thread started on first use.

    Starting and ending a handler wakes nobody (a pool runs thousands a second): the thread
    looks again when the runtime will need relief (``relief_due``: outcomes waiting
    WORKER_FLUSH_DELAY_SECONDS, claimed jobs waiting WORKER_HOLD_SECONDS on one handler), and at
    least every quarter second; a handler that starts with relief due sooner wakes it.
    """

    def __init__(self, interruption: Interruption, holder: Holder) -> None:
        self.interruption = interruption
        self.holder = holder
        self.interval = settings.JOB_HEARTBEAT_SECONDS
        self.cancel_grace = settings.JOB_CANCEL_GRACE_SECONDS
        self.tick = min(self.interval / 2, 0.25)  # notice cancel flags promptly
        self._watch: _Watch | None = None
        self._idle = True
        self._wake_at = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(
        self, job: Job, ctx: WorkerJobContext, job_type: JobType, interruptible: bool
    ) -> None:
        watch = _Watch(job, ctx, job_type, interruptible)
        due = self.holder.relief_due()
        with self._lock:
            self._watch = watch
            wake = self._idle or (due is not None and due < self._wake_at)
        if wake:
            self._changed.set()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="conveyor-watchdog", daemon=True)
            self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self._watch = None

    def _run(self) -> None:
        while True:
            with self._lock:
                watch = self._watch
                self._idle = watch is None
            if watch is None:
                self._changed.wait()
                self._changed.clear()
                continue
            now = time.monotonic()
            due = self.holder.relief_due()
            wake_at = min(
                watch.last_beat + self.interval,
                watch.hard_at if watch.soft_fired else watch.soft_at,
                now + self.tick,
                due if due is not None else now + self.tick,
            )
            with self._lock:
                self._wake_at = wake_at
            if self._changed.wait(max(0.0, wake_at - now)):
                self._changed.clear()
                continue
            with self._lock:
                if self._watch is not watch:
                    continue  # that handler ended: look at the next one
            try:
                self._check(watch)
            except Exception:
                logger.exception("watchdog check for job %s failed", watch.job.pk)

    def _check(self, watch: _Watch) -> None:
        now = time.monotonic()
        try:
            if self.holder.relieve(now):
                connection.close()  # as for beats, below
        except Exception:
            connection.close()
            logger.warning("recording outcomes from the watchdog failed", exc_info=True)
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
                self.interruption.interrupt(JobTimeout)
        elif (
            ctx.stop_seen_at is not None
            and now - ctx.stop_seen_at > self.cancel_grace
            and not watch.cancel_fired
        ):
            watch.cancel_fired = True
            logger.warning("interrupting job %s: it ignored a cancel request", watch.job.pk)
            if watch.interruptible:
                self.interruption.interrupt(JobInterrupted)

    def _beat(self, watch: _Watch) -> None:
        jobs = self.holder.owned()
        if watch.job not in jobs:
            jobs.append(watch.job)
        try:
            states = services.jobs_heartbeat(jobs=jobs)
        except (DatabaseError, InterfaceError):
            logger.warning("heartbeat for job %s failed", watch.job.pk, exc_info=True)
            return
        finally:
            # Beats are seconds apart and only for long jobs: holding a connection open for
            # them would cost every worker process a second database slot.
            connection.close()
        for job, state in zip(jobs, states, strict=True):
            if job is watch.job:
                if state is None:
                    watch.ctx.lost = True
                elif state:
                    watch.ctx.cancel_flag = True
            elif state:
                job.cancel_requested = True  # a claimed job: its handler starts knowing

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
            # Outcomes and unstarted jobs of this process first: the kill must lose none.
            self.holder.flush(give_back=True)
        except Exception:
            logger.exception("recording outcomes before the kill failed")
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
