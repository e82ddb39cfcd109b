"""Lock order (docs/architecture.md, "Lock order"): statements that lock several jobs take them
in id order, and a worker's group of outcomes that PostgreSQL aborts as a deadlock's victim is
recorded by its retry, once.

Each test holds a row lock from a second connection of its own, which it then uses to probe
which rows the statement under test has locked (``FOR UPDATE NOWAIT``) or to close a cycle."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, connections

from apps.core.ids import uuid7_with_time
from apps.jobs import services, store
from apps.jobs.models import Job, JobEvent, JobStatus
from apps.jobs.services import Outcome
from tests.factories import JobFactory
from workers import runtime

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def other() -> Iterator[psycopg.Connection[Any]]:
    """A second connection to the test database, in a transaction of its own."""
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
    ) as conn:
        yield conn
        conn.rollback()


LOCK = "SELECT 1 FROM jobs_job WHERE id = %s FOR UPDATE"


def _lock(conn: psycopg.Connection[Any], job: Job, *, nowait: bool = False) -> None:
    conn.execute(LOCK + " NOWAIT" if nowait else LOCK, [job.pk])


def _waiting_on_a_lock() -> bool:
    """Whether a backend waits for a lock (the statement under test, blocked). Read on this
    thread's connection, outside any transaction: pg_stat_activity is a snapshot per
    transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` on a thread of its own (its own Django connection)."""
    outcome: list[Any] = []

    def body() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, outcome


def _until(condition: Callable[[], bool], *, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _claimed(count: int) -> list[Job]:
    """``count`` echo jobs, claimed (running), in id order."""
    for _ in range(count):
        JobFactory(input={"message": "m"})
    jobs = [services.job_claim_next(queue="default") for _ in range(count)]
    assert all(job is not None for job in jobs)
    return sorted((job for job in jobs if job is not None), key=lambda job: job.pk)


def test_successes_lock_their_rows_in_id_order(other: psycopg.Connection[Any]) -> None:
    """Given the higher id first, the statement still locks the lower one first: while it
    waits for the higher one (held here), the lower one is already its own."""
    low, high = _claimed(2)
    _lock(other, high)
    outcomes = [Outcome(job=j, status=JobStatus.SUCCEEDED, result={}) for j in (high, low)]
    thread, result = _in_thread(lambda: services.jobs_record_and_claim(outcomes=outcomes))
    _until(_waiting_on_a_lock)
    with pytest.raises(psycopg.errors.LockNotAvailable):
        _lock(other, low, nowait=True)
    other.rollback()
    thread.join(30)
    recorded, _ = result[0]
    assert [job.status for job in recorded] == [JobStatus.SUCCEEDED] * 2


def test_mixed_outcomes_lock_every_row_in_id_order_first(other: psycopg.Connection[Any]) -> None:
    """A failure (its own statement) of the lower id and a success of the higher one: the
    group locks the lower one before waiting for the higher one."""
    low, high = _claimed(2)
    _lock(other, high)
    outcomes = [
        Outcome(job=high, status=JobStatus.SUCCEEDED, result={}),
        Outcome(job=low, status=JobStatus.FAILED, code="boom", message="boom"),
    ]
    thread, result = _in_thread(lambda: services.jobs_record_and_claim(outcomes=outcomes))
    _until(_waiting_on_a_lock)
    with pytest.raises(psycopg.errors.LockNotAvailable):
        _lock(other, low, nowait=True)
    other.rollback()
    thread.join(30)
    recorded, _ = result[0]
    assert [job.status for job in recorded] == [JobStatus.SUCCEEDED, JobStatus.FAILED]


def test_a_deadlock_victim_group_is_recorded_by_its_retry_once(
    other: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's group locks the lower job and waits for the higher one, held here; this
    connection then asks for the lower one, closing the cycle. PostgreSQL aborts the worker's
    transaction (its deadlock check comes first: it waited first), which the runtime runs
    again at once: both successes recorded, each with one event, neither job run again."""
    low, high = _claimed(2)
    worker = runtime.WorkerRuntime()
    for job in (high, low):
        worker._done(Outcome(job=job, status=JobStatus.SUCCEEDED, result={"ran": 1}))
    other.execute("SET deadlock_timeout = '30s'")  # the worker's check (1 s) finds the cycle
    _lock(other, high)
    thread, result = _in_thread(lambda: worker.flush())
    _until(_waiting_on_a_lock)
    _lock(other, low)  # returns once the worker's transaction is aborted
    other.commit()
    thread.join(30)
    assert "was aborted (40P01); retrying" in caplog.text  # the deadlock happened
    assert result == [[]]  # flush returned (no claim asked), after its retry
    assert worker.finished == {"succeeded": 2}
    assert worker.pending == []
    for job in (low, high):
        row = Job.objects.get(pk=job.pk)
        assert (row.status, row.attempts, row.result) == (JobStatus.SUCCEEDED, 1, {"ran": 1})
        kinds = list(JobEvent.objects.filter(job_id=job.pk).values_list("to_status", flat=True))
        assert kinds.count("succeeded") == 1
        assert kinds.count("running") == 1


def test_dependents_are_released_and_canceled_in_id_order(
    other: psycopg.Connection[Any],
) -> None:
    """Two waiting dependents of one job: with the higher one held here, the release (and the
    cancel) has locked the lower one first."""
    (root,) = _claimed(1)
    low_id, high_id = sorted(uuid7_with_time()[0] for _ in range(2))
    # The higher id stored first: the scan meets it first, the lock order must not.
    high, low = (
        JobFactory(
            id=job_id,
            client=root.client,
            depends_on=[root.pk],
            pending_dependencies=1,
            input={"message": "m"},
        )
        for job_id in (high_id, low_id)
    )
    Job.objects.filter(pk=root.pk).update(has_dependents=True)
    root.has_dependents = True
    _lock(other, high)
    thread, result = _in_thread(
        lambda: store.release_dependents([root.pk], at=root.started_at)  # type: ignore[arg-type]
    )
    _until(_waiting_on_a_lock)
    with pytest.raises(psycopg.errors.LockNotAvailable):
        _lock(other, low, nowait=True)
    other.rollback()
    thread.join(30)
    assert sorted(job.pk for job in result[0]) == [low.pk, high.pk]
    assert set(
        Job.objects.filter(pk__in=[low.pk, high.pk]).values_list("pending_dependencies", flat=True)
    ) == {0}
