"""The worker runtime, in-process: claim, handler, outcome; context; limits."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from django.db import connection

from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from apps.jobs.registry import _registry, job_type
from tests.factories import JobFactory
from workers import runtime

pytestmark = pytest.mark.django_db


def echo_job(**input: Any) -> Job:
    base = {
        "message": "hi",
        "sleep_seconds": 0,
        "fail_times": 0,
        "fail_permanently": False,
        "progress_steps": 0,
    }
    return JobFactory(input={**base, **input})


def test_execute_runs_the_handler_and_records_success() -> None:
    job = echo_job(message="ping")
    assert runtime.execute(str(job.pk), worker="w", task_id="t") == "succeeded"
    job.refresh_from_db()
    assert job.result == {"message": "ping", "attempt": 1}
    assert (job.worker, job.task_id, job.attempts) == ("w", "t", 1)


def test_execute_does_not_run_a_job_that_is_not_queued() -> None:
    job = JobFactory(status=JobStatus.CANCELED)
    assert runtime.execute(str(job.pk)) == "not_queued"
    assert Job.objects.get(pk=job.pk).attempts == 0


def test_permanent_error_fails_at_once() -> None:
    job = echo_job(fail_permanently=True)
    assert runtime.execute(str(job.pk)) == "failed"
    job.refresh_from_db()
    assert job.error["code"] == "echo_failed_permanently"
    assert job.attempts == 1


def test_retryable_error_schedules_a_retry() -> None:
    job = echo_job(fail_times=1)
    assert runtime.execute(str(job.pk)) == "retrying"
    job.refresh_from_db()
    assert job.error["code"] == "echo_failed"
    assert job.run_at is not None


def test_progress_is_recorded() -> None:
    job = echo_job(progress_steps=4, sleep_seconds=0.04)
    runtime.execute(str(job.pk))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.progress == {"percent": 100, "message": "step 4 of 4"}


def test_a_result_that_is_not_an_object_fails_the_job() -> None:
    job = JobFactory(type="testing.bad_result", input={})
    assert runtime.execute(str(job.pk)) == "failed"
    assert Job.objects.get(pk=job.pk).error["code"] == "invalid_result"


def test_soft_time_limit_fails_with_timeout() -> None:
    def slow(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        raise SoftTimeLimitExceeded()

    class Empty(__import__("rest_framework").serializers.Serializer):
        pass

    job_type("testing.soft_limit", input=Empty, retry_on_timeout=False)(slow)
    try:
        job = JobFactory(type="testing.soft_limit", input={})
        assert runtime.execute(str(job.pk)) == "failed"
        assert Job.objects.get(pk=job.pk).error["code"] == "timeout"
    finally:
        _registry.pop("testing.soft_limit")


def test_unknown_job_type_is_retried_not_lost() -> None:
    job = JobFactory(type="gone.away", input={})
    assert runtime.execute(str(job.pk)) == "retrying"
    assert Job.objects.get(pk=job.pk).error["code"] == "unknown_job_type"


@pytest.mark.django_db(transaction=True)
def test_cooperative_handler_stops_on_cancel_request() -> None:
    job = echo_job(sleep_seconds=30)
    outcome: list[str] = []

    def run() -> None:
        outcome.append(runtime.execute(str(job.pk)))
        connection.close()

    thread = threading.Thread(target=run)
    start = time.monotonic()
    thread.start()
    while Job.objects.get(pk=job.pk).status != JobStatus.RUNNING:
        time.sleep(0.02)
    services.job_cancel(job=Job.objects.get(pk=job.pk))
    thread.join(10)
    assert outcome == ["canceled"]
    assert time.monotonic() - start < 5
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELED


def test_soft_timeout_interrupts_a_sleeping_handler() -> None:
    job = JobFactory(
        type="testing.stubborn", input={"seconds": 30}, timeout_seconds=1, max_attempts=1
    )
    start = time.monotonic()
    assert runtime.execute(str(job.pk)) == "failed"
    assert time.monotonic() - start < 5
    assert Job.objects.get(pk=job.pk).error["code"] == "timeout"


def test_run_queue_claims_by_priority_then_age() -> None:
    low = echo_job()
    Job.objects.filter(pk=low.pk).update(priority=0)
    normal = echo_job()
    high = echo_job()
    Job.objects.filter(pk=high.pk).update(priority=2)
    assert runtime.run_queue("default") == {"succeeded": 3}
    started = sorted(Job.objects.all(), key=lambda j: j.started_at)
    assert [j.pk for j in started] == [high.pk, normal.pk, low.pk]


def test_an_outcome_with_dependents_is_recorded_before_the_next_job(settings: Any) -> None:
    """Outcomes wait for others (the grouping delay, here a minute) unless one's job has
    dependents: then it is recorded before the next held job starts."""
    settings.WORKER_FLUSH_DELAY_SECONDS = 60
    first, second, _third = (echo_job() for _ in range(3))
    Job.objects.filter(pk=second.pk).update(has_dependents=True)
    claimed = [services.job_claim_next(queue="default") for _ in range(3)]
    worker = runtime.WorkerRuntime()
    worker.estimates.by_type["diagnostics.echo"] = 0.001  # known to be quick
    a, b, c = claimed
    assert a is not None
    assert b is not None
    assert c is not None
    assert (a.pk, b.pk, b.has_dependents) == (first.pk, second.pk, True)
    worker.held.extend([b, c])
    worker._done(services.Outcome(job=a, status=JobStatus.SUCCEEDED, result={}))
    assert worker._next() is b  # a plain outcome waits for company
    assert Job.objects.get(pk=first.pk).status == JobStatus.RUNNING
    worker._done(services.Outcome(job=b, status=JobStatus.SUCCEEDED, result={}))
    assert worker._next() is c  # one with dependents does not
    assert worker.pending == []
    assert set(
        Job.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)
    ) == {JobStatus.SUCCEEDED}
