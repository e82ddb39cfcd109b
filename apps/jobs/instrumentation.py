"""What jobs tell the logs and the metrics.

- one log line per transition (``conveyor.jobs``): job id, type, queue, attempt, from → to, and
  how long the job spent in the state it left (the queue wait for a start, the run time for an
  outcome), with the request id of the submission;
- counters and histograms: jobs submitted and finished by type and status, run time and queue
  wait by type (apps/core/metrics.py);
- at scrape time (the web's /metrics): per queue, the wake-ups waiting in the broker, the jobs
  waiting in the database and the oldest one's age, and the live workers.

Transitions are observed through ``job_changed`` once their transaction commits (a rolled-back
change is neither logged nor counted), in whichever process made them: workers for runs,
the web for cancels, the scheduler for recoveries. Prometheus adds the processes up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from apps.core import metrics
from apps.jobs.models import TERMINAL_STATUSES, Job, JobStatus
from apps.jobs.queues import Waiting, reported_queues, waiting_jobs

logger = logging.getLogger("conveyor.jobs")

_submitted = metrics.LabelledChildren(metrics.jobs_submitted_total)
_finished = metrics.LabelledChildren(metrics.jobs_finished_total)
_run_seconds = metrics.LabelledChildren(metrics.job_run_seconds)
_wait_seconds = metrics.LabelledChildren(metrics.job_queue_wait_seconds)


def record_submitted(jobs: Iterable[Job]) -> None:
    """Count accepted jobs once they are committed (called by the submission services)."""
    if settings.METRICS_ENABLED:
        transaction.on_commit(partial(_count_submitted, list(jobs)))


def _count_submitted(jobs: list[Job]) -> None:
    for job in jobs:
        _submitted(job.type, job.status).inc()


def on_job_changed(sender: Any, job: Job, previous: str, **kwargs: Any) -> None:
    if previous == job.status:
        return  # progress or a cancel request: no transition
    transaction.on_commit(partial(record_transition, job, previous, time.time()))


def _seconds_since(moment: Any, now: float) -> float | None:
    return max(0.0, now - moment.timestamp()) if moment is not None else None


def record_transition(job: Job, previous: str, now: float) -> None:
    """Log and count one committed transition."""
    status = job.status
    spent: float | None = None
    if previous == JobStatus.QUEUED and status == JobStatus.RUNNING:
        if job.started_at is not None:
            spent = _seconds_since(job.enqueued_at or job.created_at, job.started_at.timestamp())
        if settings.METRICS_ENABLED and spent is not None:
            _wait_seconds(job.type).observe(spent)
    elif previous == JobStatus.RUNNING:
        spent = _seconds_since(job.started_at, now)
        if settings.METRICS_ENABLED and spent is not None:
            _run_seconds(job.type).observe(spent)
    if settings.METRICS_ENABLED and status in TERMINAL_STATUSES:
        _finished(job.type, status).inc()
    if logger.isEnabledFor(logging.INFO):
        duration_ms = round(spent * 1000, 2) if spent is not None else None
        logger.info(
            "job %s %s → %s",
            job.pk,
            previous,
            status,
            extra={
                "job_id": str(job.pk),
                "job_type": job.type,
                "queue": job.queue,
                "attempt": job.attempts,
                "from_status": previous,
                "to_status": status,
                "duration_ms": duration_ms,
                "request_id": job.request_id or None,
                "worker": job.worker or None,
            },
        )


# --- Scrape-time gauges (the web's /metrics) ---------------------------------------------------

SCRAPE_STATEMENT_TIMEOUT_MS = 2000


class QueueCollector:
    """Queue depths, waiting jobs and live workers, read when Prometheus scrapes the web.

    Bounded: one grouped query over the partial index of queued jobs (with a statement timeout),
    one passive declare per queue on the broker, three Redis commands for the workers. A source
    that fails is left out and ``conveyor_metrics_source_up`` says which.
    """

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "conveyor_metrics_source_up",
            "Whether the scrape could read each source of the queue and worker gauges.",
            labels=["source"],
        )
        waiting = self._waiting()
        up.add_metric(["database"], 0 if waiting is None else 1)
        from apps.jobs.broker import queue_depths

        names = reported_queues(waiting)
        jobs = GaugeMetricFamily(
            "conveyor_queue_jobs",
            "Jobs waiting in each queue (status queued) in the database: what workers drain.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "conveyor_queue_oldest_job_age_seconds",
            "How long the oldest queued job of each queue has waited (0 when none waits).",
            labels=["queue"],
        )
        if waiting is not None:
            now = time.time()
            for name in names:
                queued = waiting.get(name)
                jobs.add_metric([name], queued.count if queued else 0)
                since = queued.oldest if queued else None
                oldest.add_metric([name], _seconds_since(since, now) or 0.0)
        yield jobs
        yield oldest
        depths = queue_depths(names)
        depth = GaugeMetricFamily(
            "conveyor_queue_depth",
            "Wake-up messages waiting in the broker per queue. Not jobs: one wake-up drains many "
            "jobs; scale on conveyor_queue_jobs and conveyor_queue_oldest_job_age_seconds.",
            labels=["queue"],
        )
        for name, value in depths.items():
            if value is not None:
                depth.add_metric([name], value)
        up.add_metric(["broker"], 0 if any(v is None for v in depths.values()) else 1)
        yield depth
        yield from self._workers(up)
        yield up

    def _waiting(self) -> dict[str, Waiting] | None:
        try:
            with transaction.atomic(using="default"):
                with connections["default"].cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
                return waiting_jobs(using="default")
        except Exception:
            logger.warning("metrics: could not count queued jobs", exc_info=True)
            return None

    def _workers(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        from apps.jobs.fleet import live_workers

        try:
            per_queue = live_workers()
        except Exception:
            logger.warning("metrics: could not read worker heartbeats", exc_info=True)
            up.add_metric(["workers"], 0)
            return
        if per_queue is None:
            return
        up.add_metric(["workers"], 1)
        instances = GaugeMetricFamily(
            "conveyor_workers_active",
            "Live Celery worker instances (heartbeat within 3 intervals) serving each queue.",
            labels=["queue"],
        )
        processes = GaugeMetricFamily(
            "conveyor_worker_processes",
            "Pool processes of the live workers serving each queue: jobs they can run at once.",
            labels=["queue"],
        )
        for queue, (count, size) in sorted(per_queue.items()):
            instances.add_metric([queue], count)
            processes.add_metric([queue], size)
        yield instances
        yield processes
