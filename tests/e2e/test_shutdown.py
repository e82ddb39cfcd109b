"""Graceful shutdown of a worker as the Procfile runs it (REMAP_SIGTERM=SIGQUIT): on SIGTERM it
stops taking wake-ups, lets the job in hand finish within WORKER_SHUTDOWN_GRACE_SECONDS, and
stops a job that takes longer, which the maintenance loop then puts back in the queue."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs.maintenance import jobs_recover_stale
from apps.jobs.models import Job, JobEvent, JobStatus
from tests.support.broker import empty_test_broker
from tests.support.processes import start_worker, wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]

GRACE = 3
ECHO = {"type": "diagnostics.echo", "input": {"message": "x"}}


def status_of(job_id: str) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job_id)


def test_sigterm_lets_a_short_job_finish_and_a_long_one_come_back(
    tmp_path: Path, transactional_db: None, tenant: Tenant, settings: Any
) -> None:
    empty_test_broker()
    worker = start_worker(
        tmp_path, name="stopping", REMAP_SIGTERM="SIGQUIT", WORKER_SHUTDOWN_GRACE_SECONDS=str(GRACE)
    )
    try:
        short = tenant.submit(input={"message": "short", "sleep_seconds": 1}).json()["id"]
        long = tenant.submit(input={"message": "long", "sleep_seconds": 60}).json()["id"]
        wait_for(lambda: status_of(short) == status_of(long) == JobStatus.RUNNING, timeout=10)
        queued_later = tenant.submit().json()["id"]
        stopped_at = time.monotonic()
        worker.signal(signal.SIGTERM)
        worker.proc.wait(GRACE + 10)
        took = time.monotonic() - stopped_at
    finally:
        worker.stop()
    assert took < GRACE + 8
    assert status_of(short) == JobStatus.SUCCEEDED
    # No new work was taken while shutting down.
    assert status_of(queued_later) == JobStatus.QUEUED
    # The long job was stopped in its first attempt; once its heartbeat is stale, the
    # maintenance loop queues it again.
    assert status_of(long) == JobStatus.RUNNING
    later = timezone.now() + timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS + 1)
    assert (
        jobs_recover_stale(
            heartbeat_timeout=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS, grace=0, now=later
        )
        == 1
    )
    job = Job.objects.get(pk=long)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)


def test_a_long_job_holds_back_neither_earlier_outcomes_nor_the_jobs_claimed_behind_it(
    tmp_path: Path, transactional_db: None, tenant: Tenant
) -> None:
    """One process claims a batch: short jobs, a long one, more short ones. While the long one
    runs, the earlier outcomes are recorded and the later jobs given back (queued, attempt not
    counted); a SIGTERM then leaves nothing claimed but the long job."""
    empty_test_broker()
    worker = start_worker(
        tmp_path,
        name="batching",
        concurrency=1,
        REMAP_SIGTERM="SIGQUIT",
        WORKER_SHUTDOWN_GRACE_SECONDS=str(GRACE),
        WORKER_BATCH_RUN_SECONDS="1",  # once they are known to be short, 32 jobs per claim
    )
    try:
        warm = tenant.post("/api/v1/jobs/batch", {"jobs": [ECHO] * 40}).json()["jobs"]
        wait_for(lambda: all(status_of(j["id"]) == JobStatus.SUCCEEDED for j in warm), timeout=30)
        time.sleep(1)  # the warm-up's other wake-ups find the queue empty
        short = {**ECHO, "priority": "high"}
        long = {**ECHO, "input": {"message": "long", "sleep_seconds": 60}}
        later = {**ECHO, "priority": "low"}
        jobs = tenant.post("/api/v1/jobs/batch", {"jobs": [short] * 5 + [long] + [later] * 10})
        ids = [j["id"] for j in jobs.json()["jobs"]]
        earlier, long_id, behind = ids[:5], ids[5], ids[6:]
        # Recorded while the long job still runs (no timing asserted: it runs for a minute).
        wait_for(lambda: all(status_of(i) == JobStatus.SUCCEEDED for i in earlier), timeout=20)
        assert status_of(long_id) == JobStatus.RUNNING
        # Given back: queued again, no attempt counted, the claim and its release in the history.
        wait_for(lambda: all(status_of(i) == JobStatus.QUEUED for i in behind), timeout=20)
        worker.signal(signal.SIGTERM)
        worker.proc.wait(GRACE + 10)
    finally:
        worker.stop()
    assert status_of(long_id) == JobStatus.RUNNING  # stopped at the grace; maintenance's now
    for job_id in behind:
        job = Job.objects.get(pk=job_id)
        assert (job.status, job.attempts, job.started_at) == (JobStatus.QUEUED, 0, None)
        history = JobEvent.objects.filter(job_id=job_id).order_by("id")
        assert [(e.from_status, e.to_status, e.attempt) for e in history] == [
            ("", "queued", 0),
            ("queued", "running", 1),
            ("running", "queued", 0),
        ]
