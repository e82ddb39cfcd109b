"""Job services: transitions as conditional updates, events, and races decided by row counts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from apps.core.errors import InvalidState
from apps.jobs import services
from apps.jobs.models import Job, JobEvent, JobStatus
from tests.factories import ApiClientFactory, JobFactory

pytestmark = pytest.mark.django_db


def transitions(job: Job) -> list[tuple[str, str]]:
    return list(
        JobEvent.objects.filter(job_id=job.pk)
        .order_by("id")
        .values_list("from_status", "to_status")
    )


def test_start_claims_a_queued_job_once() -> None:
    job = JobFactory()
    started = services.job_start(job_id=job.pk, worker="w1", task_id="t1")
    assert started is not None
    assert (started.status, started.attempts, started.worker) == ("running", 1, "w1")
    assert started.version == job.version + 1
    assert services.job_start(job_id=job.pk, worker="w2", task_id="t2") is None
    assert transitions(job) == [("queued", "running")]


def test_start_of_a_canceled_job_is_dropped() -> None:
    job = JobFactory(status=JobStatus.CANCELED)
    assert services.job_start(job_id=job.pk) is None


def test_succeed_records_the_result() -> None:
    job = services.job_start(job_id=JobFactory().pk)
    assert job is not None
    done = services.job_succeed(job=job, result={"ok": True})
    assert done is not None
    assert (done.status, done.result, done.error) == ("succeeded", {"ok": True}, None)
    assert done.finished_at is not None


def test_an_attempt_that_lost_its_claim_cannot_finish_the_job() -> None:
    job = services.job_start(job_id=JobFactory().pk)
    assert job is not None
    # Crash recovery gave the job to a second attempt meanwhile.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    second = services.job_start(job_id=job.pk)
    assert second is not None
    assert second.attempts == 2
    assert services.job_succeed(job=job, result={"stale": True}) is None
    assert services.job_fail(job=job, code="x", message="y", retryable=False) is None
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_retryable_failure_with_attempts_left_is_retrying_with_backoff() -> None:
    job = services.job_start(job_id=JobFactory(max_attempts=3).pk)
    assert job is not None
    failed = services.job_fail(job=job, code="boom", message="transient", retryable=True)
    assert failed is not None
    assert failed.status == JobStatus.RETRYING
    assert failed.error == {"code": "boom", "message": "transient"}
    assert failed.run_at is not None
    assert failed.run_at > failed.started_at


def test_retryable_failure_on_the_last_attempt_fails() -> None:
    job = services.job_start(job_id=JobFactory(max_attempts=1).pk)
    assert job is not None
    failed = services.job_fail(job=job, code="boom", message="again", retryable=True)
    assert failed is not None
    assert failed.status == JobStatus.FAILED


def test_permanent_failure_is_not_retried() -> None:
    job = services.job_start(job_id=JobFactory(max_attempts=5).pk)
    assert job is not None
    failed = services.job_fail(job=job, code="bad", message="no", retryable=False)
    assert failed is not None
    assert failed.status == JobStatus.FAILED


def test_failure_after_a_cancel_request_ends_canceled() -> None:
    job = services.job_start(job_id=JobFactory(max_attempts=5).pk)
    assert job is not None
    services.job_cancel(job=job)  # running → cancel_requested
    failed = services.job_fail(job=job, code="boom", message="x", retryable=True)
    assert failed is not None
    assert failed.status == JobStatus.CANCELED


def test_one_heartbeat_covers_every_job_a_worker_holds() -> None:
    held = [services.job_start(job_id=JobFactory().pk) for _ in range(3)]
    assert all(job is not None for job in held)
    jobs = [job for job in held if job is not None]
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(heartbeat_at=None)
    services.job_cancel(job=Job.objects.get(pk=jobs[1].pk))
    lost = Job.objects.get(pk=jobs[2].pk)
    assert services.job_fail(job=lost, code="x", message="x", retryable=False) is not None
    assert services.jobs_heartbeat(jobs=jobs) == [False, True, None]
    stamped = dict(
        Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "heartbeat_at")
    )
    assert stamped[jobs[0].pk] is not None
    assert stamped[jobs[1].pk] is not None
    assert stamped[jobs[2].pk] is None  # not ours any more: left as its outcome wrote it


def test_progress_and_heartbeat_report_cancel_requests() -> None:
    job = services.job_start(job_id=JobFactory().pk)
    assert job is not None
    assert services.job_report_progress(job=job, percent=40, message="halfway") is False
    assert Job.objects.get(pk=job.pk).progress == {"percent": 40, "message": "halfway"}
    assert services.job_heartbeat(job=job) is False
    services.job_cancel(job=Job.objects.get(pk=job.pk))
    assert services.job_heartbeat(job=job) is True
    assert services.job_report_progress(job=job, percent=200) is True
    assert Job.objects.get(pk=job.pk).progress["percent"] == 100


def test_retry_resets_a_canceled_job_and_wakes_its_pool(wakeups: Any) -> None:
    job = JobFactory(status=JobStatus.CANCELED, attempts=2, cancel_requested=True)
    retried = services.job_retry(job=job)
    assert (retried.status, retried.attempts, retried.cancel_requested) == ("queued", 0, False)
    assert wakeups.received() == {"default": 1}


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
def test_retry_refuses_other_statuses(status: str) -> None:
    with pytest.raises(InvalidState):
        services.job_retry(job=JobFactory(status=status))


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED])
def test_cancel_refuses_finished_jobs(status: str) -> None:
    with pytest.raises(InvalidState):
        services.job_cancel(job=JobFactory(status=status))


def _race(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
    """Run two calls at the same instant on two threads (two database connections)."""
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate([first, second])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results[0], results[1]


@pytest.mark.django_db(transaction=True)
def test_cancel_and_start_racing_never_both_win() -> None:
    client = ApiClientFactory()
    outcomes = {"started": 0, "canceled": 0}
    for _ in range(60):
        job = JobFactory(client=client)
        started, cancel = _race(
            lambda job=job: services.job_start(job_id=job.pk),
            lambda job=job: services.job_cancel(job=Job.objects.get(pk=job.pk)),
        )
        assert not isinstance(started, Exception), started
        assert not isinstance(cancel, Exception), cancel
        final = Job.objects.get(pk=job.pk)
        _, canceled_at_once = cancel
        if started is None:
            # The cancel won: the job never ran.
            assert canceled_at_once
            assert final.status == JobStatus.CANCELED
            assert final.attempts == 0
            outcomes["canceled"] += 1
        else:
            # The start won: the cancel became a request on the running job.
            assert not canceled_at_once
            assert final.status == JobStatus.RUNNING
            assert final.cancel_requested
            outcomes["started"] += 1
        statuses = [to for _, to in transitions(final)]
        assert not ({"running", "canceled"} <= set(statuses)), statuses
    assert sum(outcomes.values()) == 60


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_job_start_it_once() -> None:
    client = ApiClientFactory()
    for _ in range(40):
        job = JobFactory(client=client)
        a, b = _race(
            lambda job=job: services.job_start(job_id=job.pk, worker="a"),
            lambda job=job: services.job_start(job_id=job.pk, worker="b"),
        )
        assert [a is None, b is None].count(True) == 1
        assert Job.objects.get(pk=job.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_finish_and_cancel_racing_leave_one_consistent_outcome() -> None:
    client = ApiClientFactory()
    for _ in range(40):
        running = services.job_start(job_id=JobFactory(client=client).pk)
        assert running is not None
        done, cancel = _race(
            lambda running=running: services.job_succeed(job=running, result={"n": 1}),
            lambda running=running: services.job_cancel(job=Job.objects.get(pk=running.pk)),
        )
        final = Job.objects.get(pk=running.pk)
        assert final.status == JobStatus.SUCCEEDED  # a request never cancels a finished job
        assert done is not None
        if isinstance(cancel, InvalidState):
            assert not final.cancel_requested


def test_claim_next_claims_exactly_one_job_each_time() -> None:
    client = ApiClientFactory()
    jobs = [JobFactory(client=client) for _ in range(3)]
    first = services.job_claim_next(queue="default")
    assert first is not None
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 1
    second = services.job_claim_next(queue="default")
    assert second is not None
    assert second.pk != first.pk
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 2
    assert {first.pk, second.pk} < {j.pk for j in jobs}


def test_claim_next_returns_none_on_an_empty_queue() -> None:
    JobFactory(queue="other")
    assert services.job_claim_next(queue="default") is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_job() -> None:
    client = ApiClientFactory()
    for _ in range(20):
        JobFactory(client=client)
    claimed: list[Any] = []
    lock = threading.Lock()

    def claim_all() -> None:
        while (job := services.job_claim_next(queue="default")) is not None:
            with lock:
                claimed.append(job.pk)
        connection.close()

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 20
    assert len(set(claimed)) == 20
    assert set(Job.objects.values_list("attempts", flat=True)) == {1}
