"""The watchdog: one daemon thread per worker process, looking after the job being run.

- it stamps the job's heartbeat (jobs shorter than one interval never cost a write: the claim
  stamped the first one), and learns of cancel requests from it;
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

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.registry import JobType
from workers.context import JobInterrupted, JobTimeout, WorkerJobContext
from workers.interruption import Interruption

logger = logging.getLogger("conveyor.worker")


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
    """Watches one job at a time (``watch`` … ``clear``) from a thread started on first use."""

    def __init__(self, interruption: Interruption) -> None:
        self.interruption = interruption
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
