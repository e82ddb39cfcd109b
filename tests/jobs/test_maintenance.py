"""The maintenance loop's steps, run in-process against the real database and broker."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.jobs import maintenance, services
from apps.jobs.models import IdempotencyRecord, Job, JobEvent, JobStatus
from tests.factories import ApiClientFactory, JobFactory

pytestmark = pytest.mark.django_db


def statuses(*jobs: Job) -> list[str]:
    return [Job.objects.get(pk=job.pk).status for job in jobs]


def test_promote_queues_due_scheduled_and_retrying_jobs_only() -> None:
    now = timezone.now()
    due = JobFactory(status=JobStatus.SCHEDULED, run_at=now - timedelta(seconds=1))
    later = JobFactory(status=JobStatus.SCHEDULED, run_at=now + timedelta(hours=1))
    retry = JobFactory(status=JobStatus.RETRYING, run_at=now - timedelta(seconds=1), attempts=1)
    assert maintenance.jobs_promote_due(now=now) == 2
    assert statuses(due, later, retry) == ["queued", "scheduled", "queued"]
    assert Job.objects.get(pk=retry.pk).attempts == 1  # counted when it runs
    assert JobEvent.objects.filter(to_status="queued").count() == 2


def test_promote_wakes_the_pool(wakeups: Any) -> None:
    JobFactory(status=JobStatus.SCHEDULED, run_at=timezone.now() - timedelta(seconds=1))
    maintenance.jobs_promote_due()
    assert wakeups.received() == {"default": 1}


def _running(**fields: Any) -> Job:
    job = JobFactory(**fields)
    started = services.job_start(job_id=job.pk, worker="w@dead")
    assert started is not None
    return started


def test_recover_requeues_a_job_whose_heartbeat_stopped() -> None:
    job = _running(max_attempts=3)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    alive = _running()
    assert maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5) == 1
    recovered = Job.objects.get(pk=job.pk)
    assert recovered.status == JobStatus.QUEUED
    assert recovered.error["code"] == "worker_lost"
    assert recovered.attempts == 1  # the next claim counts attempt 2
    assert Job.objects.get(pk=alive.pk).status == JobStatus.RUNNING


def test_recover_fails_a_job_out_of_attempts() -> None:
    job = _running(max_attempts=1)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5)
    assert statuses(job) == ["failed"]


def test_recover_names_a_job_that_outran_its_timeout() -> None:
    job = _running(max_attempts=1, timeout_seconds=10)
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=60),
        started_at=timezone.now() - timedelta(seconds=120),
    )
    maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5)
    assert Job.objects.get(pk=job.pk).error["code"] == "timeout"


def test_recover_cancels_a_job_whose_cancel_was_requested() -> None:
    job = _running()
    services.job_cancel(job=job)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5)
    assert statuses(job) == ["canceled"]


def test_a_recovered_attempt_cannot_finish_the_job_any_more() -> None:
    stale = _running(max_attempts=3)
    Job.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5)
    assert services.job_succeed(job=stale, result={"late": True}) is None
    assert statuses(stale) == ["queued"]


def test_wake_stalled_publishes_only_for_queues_with_old_jobs_and_no_wake_up(
    fresh_queue: Any,
) -> None:
    from apps.jobs.broker import queue_depths

    stalled, fresh = fresh_queue(), fresh_queue()
    old = timezone.now() - timedelta(seconds=120)
    JobFactory(queue=stalled, enqueued_at=old)
    JobFactory(queue=fresh, enqueued_at=timezone.now())
    assert maintenance.jobs_wake_stalled(min_age=30) == 1
    assert queue_depths([stalled, fresh]) == {stalled: 1, fresh: 0}
    # The wake-up is now waiting in the broker: no second one.
    assert maintenance.jobs_wake_stalled(min_age=30) == 0


def test_purge_deletes_old_finished_jobs_with_their_events_in_batches() -> None:
    client = ApiClientFactory()
    old = timezone.now() - timedelta(days=40)
    finished = [
        JobFactory(client=client, status=JobStatus.SUCCEEDED, finished_at=old) for _ in range(5)
    ]
    for job in finished:
        JobEvent.objects.create(job=job, from_status="running", to_status="succeeded", at=old)
    recent = JobFactory(client=client, status=JobStatus.FAILED, finished_at=timezone.now())
    active = JobFactory(client=client, status=JobStatus.QUEUED)
    deleted = maintenance.jobs_purge_finished(older_than=timedelta(days=30), batch_size=2)
    assert deleted == 5
    assert set(Job.objects.values_list("pk", flat=True)) == {recent.pk, active.pk}
    assert not JobEvent.objects.filter(job_id__in=[j.pk for j in finished]).exists()


def test_purge_step_is_bounded_and_the_run_stops_at_its_time_budget() -> None:
    old = timezone.now() - timedelta(days=40)
    for _ in range(5):
        JobFactory(status=JobStatus.CANCELED, finished_at=old)
    # A spent budget still runs one step: a run always makes progress.
    assert (
        maintenance.jobs_purge_finished(older_than=timedelta(days=30), batch_size=2, max_seconds=0)
        == 2
    )
    assert Job.objects.count() == 3
    assert maintenance.jobs_purge_finished(older_than=timedelta(days=30), batch_size=2) == 3
    assert not Job.objects.exists()


def test_purge_keeps_a_job_retried_since_it_finished() -> None:
    old = timezone.now() - timedelta(days=40)
    job = JobFactory(status=JobStatus.FAILED, finished_at=old, attempts=3)
    services.job_retry(job=job)
    assert maintenance.jobs_purge_finished(older_than=timedelta(days=30)) == 0
    assert statuses(job) == ["queued"]


def test_purge_of_idempotency_records_keeps_fresh_ones() -> None:
    client = ApiClientFactory()
    common = {"client": client, "request_hash": "x", "status_code": 202, "response": b"{}"}
    IdempotencyRecord.objects.create(
        key="old", created_at=timezone.now() - timedelta(hours=30), **common
    )
    IdempotencyRecord.objects.create(key="new", created_at=timezone.now(), **common)
    assert maintenance.idempotency_records_purge(older_than=timedelta(hours=24)) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_retry_delay_grows_with_full_jitter_within_its_bounds() -> None:
    job = JobFactory(retry_backoff_seconds=1.0)
    for attempt in range(1, 8):
        delays = [services.retry_delay(job, attempt) for _ in range(200)]
        bound = min(60.0, 1.0 * 2 ** (attempt - 1))  # echo's cap is 60 s
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound * 0.8  # the jitter spans the range
    assert max(services.retry_delay(job, 30) for _ in range(50)) <= 60


def test_a_job_retried_while_the_purge_runs_is_not_deleted(transactional_db: None) -> None:
    """The retry holds the job's row (its transaction still open) while a purge step runs: the
    step skips the row instead of waiting for it or deleting it, and the retry commits."""
    old = timezone.now() - timedelta(days=40)
    retried = JobFactory(status=JobStatus.FAILED, finished_at=old, attempts=3)
    other = JobFactory(client=retried.client, status=JobStatus.SUCCEEDED, finished_at=old)
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def retry_in_open_transaction() -> None:
        try:
            with transaction.atomic():
                services.job_retry(job=Job.objects.get(pk=retried.pk))
                locked.set()
                assert release.wait(20)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            locked.set()
        finally:
            connection.close()

    thread = threading.Thread(target=retry_in_open_transaction)
    thread.start()
    try:
        assert locked.wait(20)
        started = time.monotonic()
        deleted = maintenance.jobs_purge_finished(older_than=timedelta(days=30), max_seconds=5)
        # Skipped, not waited for (the retry is still holding the row).
        assert time.monotonic() - started < 5
        assert deleted == 1
    finally:
        release.set()
        thread.join(20)
    assert not errors, errors
    assert not Job.objects.filter(pk=other.pk).exists()
    job = Job.objects.get(pk=retried.pk)
    assert (job.status, job.finished_at, job.attempts) == (JobStatus.QUEUED, None, 0)
    # Once it finishes again it is purged like any other: by its new finished_at.
    assert maintenance.jobs_purge_finished(older_than=timedelta(days=30)) == 0
    assert Job.objects.filter(pk=retried.pk).exists()
