"""Tests that kill things: every accepted job reaches a terminal status, once.

Real worker and scheduler processes (tests/support/processes.py), real PostgreSQL and Redis.
Timings come from tests/settings.py: heartbeat every 0.5 s, a job without one for 3 s is taken
back, a queue stalled for 2 s is woken.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.clients.models import ApiClient
from apps.clients.services import client_create
from apps.jobs import services
from apps.jobs.models import Job, JobEvent, JobStatus
from tests.support.processes import (
    ManagedProcess,
    free_port,
    start_scheduler,
    start_worker,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}


@pytest.fixture
def client() -> ApiClient:
    return client_create(name="recovery", unlimited=True)[0]


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[ManagedProcess]:
    process = start_scheduler(tmp_path)
    yield process
    process.stop()


def submit(client: ApiClient, **input: Any) -> Job:
    body = {"type": input.pop("type", "diagnostics.echo"), "input": {"message": "x", **input}}
    for option in ("max_attempts", "timeout_seconds", "retry_backoff_seconds", "delay_seconds"):
        if option in body["input"]:
            body[option] = body["input"].pop(option)
    if body["type"] != "diagnostics.echo":
        body["input"].pop("message")
    return services.job_submit(client=client, data=body)


def wait_status(job: Job, statuses: set[str], timeout: float = 30) -> Job:
    def reached() -> Job | None:
        current = Job.objects.get(pk=job.pk)
        return current if current.status in statuses else None

    return wait_for(reached, timeout=timeout, interval=0.05)


def finished_once(job: Job) -> bool:
    events = list(JobEvent.objects.filter(job_id=job.pk).values_list("to_status", flat=True))
    return sum(status in TERMINAL for status in events) == 1


def test_sigkill_of_a_worker_mid_job_runs_the_job_again_once(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    worker = start_worker(tmp_path, name="doomed", relay=False)
    job = submit(client, sleep_seconds=2)
    wait_status(job, {JobStatus.RUNNING})
    worker.kill_group()  # the machine vanishes: no warm shutdown, no ack, no goodbye
    killed_at = time.time()
    survivor = start_worker(tmp_path, name="survivor", relay=False)
    try:
        done = wait_status(job, TERMINAL, timeout=40)
    finally:
        survivor.stop()
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 2
    assert done.result == {"message": "x", "attempt": 2}
    assert finished_once(done)
    recovery = JobEvent.objects.get(job_id=job.pk, from_status="running", to_status="queued")
    assert recovery.details["error"]["code"] == "worker_lost"
    # Taken back (the recovery event written) within twice the heartbeat timeout of the kill.
    recovered_after = recovery.at.timestamp() - killed_at
    assert 0 < recovered_after < 2 * settings.JOB_HEARTBEAT_TIMEOUT_SECONDS


def submit_batch(client: ApiClient, *groups: tuple[int, str, float]) -> list[list[Job]]:
    """One batch of echo jobs, (count, priority, sleep seconds) per group: queued together, so
    that one claim can take them all, highest priority first."""
    items = [
        {
            "type": "diagnostics.echo",
            "input": {"message": "x", "sleep_seconds": sleep},
            "priority": p,
        }
        for count, p, sleep in groups
        for _ in range(count)
    ]
    jobs = services.job_submit_batch(client=client, data={"jobs": items})
    split, start = [], 0
    for count, _, _ in groups:
        split.append(jobs[start : start + count])
        start += count
    return split


def warm_up(client: ApiClient, n: int = 40) -> None:
    """Run ``n`` echo jobs so that the worker knows them to be short and claims in batches."""
    [jobs] = submit_batch(client, (n, "normal", 0))
    for job in jobs:
        wait_status(job, TERMINAL)
    # Let the batch's other wake-ups find the queue empty: one of them claiming while the next
    # batch commits would take only the part it sees.
    time.sleep(1)


def test_sigkill_of_a_worker_holding_a_claimed_batch_and_unrecorded_outcomes(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    # Outcomes wait for the next claim and claimed jobs stay claimed however long the job in
    # hand runs: the kill finds finished-but-unrecorded jobs, a running one and unstarted ones.
    holding = {
        "WORKER_FLUSH_DELAY_SECONDS": "600",
        "WORKER_HOLD_SECONDS": "600",
        "WORKER_BATCH_RUN_SECONDS": "1",  # once they are known to be short, 32 jobs per claim
    }
    worker = start_worker(tmp_path, name="holding", concurrency=1, relay=False, **holding)
    try:
        warm_up(client)
        finished, [long], unstarted = submit_batch(
            client, (5, "high", 0), (1, "normal", 8), (10, "low", 0)
        )
        batch = [*finished, long, *unstarted]
        wait_for(
            lambda: (
                Job.objects.filter(pk__in=[j.pk for j in batch], status="running").count()
                == len(batch)
            ),
            timeout=20,
        )
        time.sleep(1)  # the five short ones have run; the long one runs
        # Their outcomes are not recorded: nothing about them is visible yet.
        assert {Job.objects.get(pk=j.pk).status for j in finished} == {JobStatus.RUNNING}
        assert not JobEvent.objects.filter(job_id__in=[j.pk for j in batch], to_status="succeeded")
        # The watchdog keeps every held job's heartbeat fresh, not only the running one's.
        time.sleep(settings.JOB_HEARTBEAT_TIMEOUT_SECONDS + 1)
        assert Job.objects.filter(pk__in=[j.pk for j in batch], status="running").count() == 16
    finally:
        worker.kill_group()
    survivor = start_worker(tmp_path, name="survivor", relay=False)
    try:
        done = [wait_status(job, TERMINAL, timeout=60) for job in batch]
    finally:
        survivor.stop()
    assert {job.status for job in done} == {JobStatus.SUCCEEDED}
    assert all(finished_once(job) for job in batch)
    # Every job held by the killed process ran again once, as a second attempt.
    assert {job.attempts for job in done} == {2}
    # (The survivor may also give back jobs claimed behind the long one: not failures.)
    lost = JobEvent.objects.filter(
        job_id__in=[j.pk for j in batch],
        from_status="running",
        to_status__in=[JobStatus.QUEUED, JobStatus.RETRYING],
        details__has_key="error",
    )
    assert {event.details["error"]["code"] for event in lost} == {"worker_lost"}
    assert lost.count() == len(batch)


def test_a_poison_job_that_kills_its_worker_stops_after_max_attempts(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    worker = start_worker(tmp_path, relay=False)
    try:
        job = submit(client, type="testing.crash", max_attempts=2)
        done = wait_status(job, TERMINAL, timeout=40)
    finally:
        worker.stop()
    assert done.status == JobStatus.FAILED
    assert done.attempts == 2
    assert done.error["code"] == "worker_lost"


def test_a_job_that_ignores_its_timeout_is_killed_and_fails_with_timeout(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    worker = start_worker(tmp_path, relay=False)
    try:
        job = submit(client, type="testing.hog", seconds=60, max_attempts=1)
        started = time.monotonic()
        done = wait_status(job, TERMINAL, timeout=30)
        took = time.monotonic() - started
        # The pool replaced the killed process and keeps working.
        after = submit(client)
        assert wait_status(after, TERMINAL).status == JobStatus.SUCCEEDED
    finally:
        worker.stop()
    assert done.status == JobStatus.FAILED
    assert done.error["code"] == "timeout"
    assert took < 1 + settings.JOB_TIMEOUT_GRACE_SECONDS + 5


def test_a_running_job_that_ignores_a_cancel_is_interrupted(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    worker = start_worker(tmp_path, relay=False)
    try:
        job = submit(client, type="testing.stubborn", seconds=60)
        running = wait_status(job, {JobStatus.RUNNING})
        _, finished = services.job_cancel(job=running)
        assert not finished
        requested = time.monotonic()
        done = wait_status(job, TERMINAL, timeout=20)
        took = time.monotonic() - requested
    finally:
        worker.stop()
    assert done.status == JobStatus.CANCELED
    assert took < settings.JOB_CANCEL_GRACE_SECONDS + 3


def test_retries_follow_the_backoff_schedule_then_succeed(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    worker = start_worker(tmp_path, relay=False)
    try:
        job = submit(client, fail_times=3, max_attempts=5, retry_backoff_seconds=0.4)
        done = wait_status(job, TERMINAL, timeout=40)
    finally:
        worker.stop()
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 4
    events = list(JobEvent.objects.filter(job_id=job.pk).order_by("id"))
    failures = [e for e in events if e.to_status == "retrying"]
    starts = [e for e in events if e.to_status == "running"]
    assert [e.details["error"]["code"] for e in failures] == ["echo_failed"] * 3
    for n, (failure, next_start) in enumerate(zip(failures, starts[1:], strict=True), start=1):
        gap = (next_start.at - failure.at).total_seconds()
        # Full jitter: between 0 and base * 2^(n-1), plus the promotion tick and a claim.
        assert 0 <= gap <= 0.4 * 2 ** (n - 1) + 1.5


def test_a_permanent_error_is_not_retried(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    worker = start_worker(tmp_path, relay=False)
    try:
        job = submit(client, fail_permanently=True, max_attempts=5)
        done = wait_status(job, TERMINAL)
    finally:
        worker.stop()
    assert (done.status, done.attempts) == (JobStatus.FAILED, 1)


def test_a_scheduled_job_starts_on_time_not_early(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    worker = start_worker(tmp_path, relay=False)
    try:
        job = submit(client, delay_seconds=2)
        assert job.status == JobStatus.SCHEDULED
        done = wait_status(job, TERMINAL, timeout=20)
    finally:
        worker.stop()
    assert done.run_at is not None
    assert done.started_at is not None
    early = (done.run_at - done.started_at).total_seconds()
    late = (done.started_at - done.run_at).total_seconds()
    assert early <= 0, "started before it was due"
    assert late < 1.5


def test_a_high_priority_job_overtakes_10000_queued_low_ones(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess
) -> None:
    low = {"type": "diagnostics.echo", "input": {"message": "low"}, "priority": "low"}
    for _ in range(10):
        services.job_submit_batch(client=client, data={"jobs": [low] * 1000})
    high = services.job_submit(
        client=client,
        data={"type": "diagnostics.echo", "input": {"message": "high"}, "priority": "high"},
    )
    worker = start_worker(tmp_path, concurrency=1, relay=False)
    try:
        done = wait_status(high, TERMINAL, timeout=30)
    finally:
        worker.stop()
    assert done.status == JobStatus.SUCCEEDED
    assert done.started_at is not None
    overtaken = Job.objects.filter(priority=0, started_at__lt=done.started_at).count()
    assert overtaken == 0


@pytest.mark.parametrize("remap", ["", "SIGQUIT"], ids=["warm", "procfile-remap"])
def test_sigterm_finishes_or_returns_every_job(
    tmp_path: Path, client: ApiClient, scheduler: ManagedProcess, remap: str
) -> None:
    jobs = [submit(client, sleep_seconds=0.5) for _ in range(12)]
    worker = start_worker(tmp_path, name="leaving", relay=False, REMAP_SIGTERM=remap)
    wait_for(lambda: Job.objects.filter(status=JobStatus.RUNNING).exists(), timeout=20)
    worker.signal(signal.SIGTERM)
    worker.proc.wait(30)
    successor = start_worker(tmp_path, name="successor", relay=False)
    try:
        for job in jobs:
            assert wait_status(job, TERMINAL, timeout=40).status == JobStatus.SUCCEEDED
    finally:
        successor.stop()
    assert all(finished_once(job) for job in jobs)
    assert all(Job.objects.get(pk=job.pk).attempts == 1 for job in jobs)


def test_a_redis_restart_without_persistence_loses_no_queued_job(
    tmp_path: Path, client: ApiClient
) -> None:
    port = free_port()
    redis_argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(redis_argv, stdout=subprocess.DEVNULL)
        wait_for(lambda: _redis_answers(port), timeout=10)
        return process

    own = {
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
    }
    redis = start_redis()
    scheduler = worker = None
    try:
        scheduler = start_scheduler(tmp_path, **own)
        jobs = [submit(client) for _ in range(200)]
        time.sleep(0.5)  # the relay has published their wake-ups into this Redis
        redis.kill()
        redis.wait(10)
        redis = start_redis()  # empty: every message is gone
        worker = start_worker(tmp_path, relay=False, **own)
        wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 200, timeout=60)
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.stop()
        redis.kill()
        redis.wait(10)
    assert all(finished_once(job) for job in jobs)
    assert set(Job.objects.values_list("attempts", flat=True)) == {1}


def _redis_answers(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False
