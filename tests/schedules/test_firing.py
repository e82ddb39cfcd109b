"""The firing step (apps/schedules/firing.py): each tick once, however many schedulers; missed
ticks once; overlap honoured; DST as documented; quotas apply; a crash commits nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.clients.services import client_create
from apps.jobs.models import Job, JobStatus
from apps.schedules import firing
from apps.schedules.models import Schedule
from apps.schedules.services import schedule_create

JOB = {"type": "diagnostics.echo", "input": {"message": "tick"}}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_schedule(client: ApiClient, *, now: datetime | None = None, **fields: Any) -> Schedule:
    data = {"name": f"s-{Schedule.objects.count()}", "cron": "* * * * *", "job": JOB, **fields}
    return schedule_create(client=client, data=data, now=now)


def make_client(name: str = "acme", **fields: Any) -> ApiClient:
    client, _ = client_create(name=name)
    for field, value in fields.items():
        setattr(client, field, value)
    client.save()
    return client


def fire(now: datetime) -> int:
    return firing.schedules_fire_due_batch(now=now)


@pytest.mark.django_db
class TestFiring:
    def test_a_due_schedule_fires_one_job_marked_with_it(self) -> None:
        start = timezone.now()
        schedule = make_schedule(make_client(), now=start)
        assert fire(start) == 0  # not due yet
        tick = schedule.next_run_at
        assert fire(tick) == 1
        schedule.refresh_from_db()
        [job] = Job.objects.all()
        assert job.schedule_id == schedule.pk
        assert job.status == JobStatus.QUEUED
        assert job.input["message"] == "tick"
        assert (schedule.last_job_id, schedule.last_run_at) == (job.pk, tick)
        assert schedule.next_run_at == tick + timedelta(minutes=1)
        assert fire(tick) == 0

    def test_ticks_missed_while_no_scheduler_ran_fire_once(self) -> None:
        start = utc(2027, 1, 5, 8, 0, 30)
        schedule = make_schedule(make_client(), now=start, overlap="allow")
        back = start + timedelta(hours=3)  # 180 ticks missed
        assert fire(back) == 1
        assert fire(back) == 0
        schedule.refresh_from_db()
        assert Job.objects.count() == 1
        assert schedule.next_run_at == utc(2027, 1, 5, 11, 1)

    def test_overlap_skip_skips_ticks_while_the_previous_run_is_active(self) -> None:
        start = utc(2027, 1, 5, 8, 0, 30)
        schedule = make_schedule(make_client(), now=start)
        assert fire(utc(2027, 1, 5, 8, 1)) == 1
        first = Job.objects.get()
        assert fire(utc(2027, 1, 5, 8, 2)) == 1  # claimed, skipped
        schedule.refresh_from_db()
        assert Job.objects.count() == 1
        assert schedule.last_skip_reason == "overlap"
        assert schedule.last_skipped_at == utc(2027, 1, 5, 8, 2)
        assert schedule.next_run_at == utc(2027, 1, 5, 8, 3)
        Job.objects.filter(pk=first.pk).update(status=JobStatus.SUCCEEDED)
        fire(utc(2027, 1, 5, 8, 3))
        assert Job.objects.count() == 2

    def test_overlap_allow_fires_beside_an_active_run(self) -> None:
        make_schedule(make_client(), now=utc(2027, 1, 5, 8, 0, 30), overlap="allow")
        for minute in (1, 2, 3):
            fire(utc(2027, 1, 5, 8, minute))
        assert Job.objects.filter(status=JobStatus.QUEUED).count() == 3

    def test_a_client_at_its_quota_skips_the_tick_and_the_batch_goes_on(self) -> None:
        start = utc(2027, 1, 5, 8, 0, 30)
        full = make_client("full", max_active_jobs=1)
        Job.objects.create(
            client=full,
            type="diagnostics.echo",
            status=JobStatus.QUEUED,
            queue="default",
            max_attempts=1,
            timeout_seconds=10,
            created_at=start,
        )
        blocked = make_schedule(full, now=start, overlap="allow")
        other = make_schedule(make_client("other"), now=start)
        assert fire(utc(2027, 1, 5, 8, 1)) == 2
        blocked.refresh_from_db()
        other.refresh_from_db()
        assert blocked.last_skip_reason == "quota_exceeded"
        assert blocked.last_job_id is None
        assert blocked.next_run_at == utc(2027, 1, 5, 8, 2)
        assert Job.objects.filter(schedule_id=other.pk).count() == 1

    def test_a_job_that_no_longer_validates_is_a_recorded_skip(self) -> None:
        schedule = make_schedule(make_client(), now=utc(2027, 1, 5, 8, 0, 30))
        Schedule.objects.filter(pk=schedule.pk).update(job={"type": "removed.type"})
        assert fire(utc(2027, 1, 5, 8, 1)) == 1
        schedule.refresh_from_db()
        assert schedule.last_skip_reason == "invalid_job"
        assert not Job.objects.exists()

    def test_an_inactive_clients_schedules_wait_and_fire_once_when_it_is_back(self) -> None:
        client = make_client()
        schedule = make_schedule(client, now=utc(2027, 1, 5, 8, 0, 30))
        ApiClient.objects.filter(pk=client.pk).update(is_active=False)
        assert fire(utc(2027, 1, 5, 9, 0)) == 0
        ApiClient.objects.filter(pk=client.pk).update(is_active=True)
        assert fire(utc(2027, 1, 5, 10, 0)) == 1
        schedule.refresh_from_db()
        assert Job.objects.count() == 1
        assert schedule.next_run_at == utc(2027, 1, 5, 10, 1)

    def test_a_disabled_schedule_never_fires(self) -> None:
        make_schedule(make_client(), now=utc(2027, 1, 5, 8), enabled=False)
        assert fire(utc(2030, 1, 1)) == 0

    def test_a_crash_before_commit_loses_and_doubles_nothing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        schedule = make_schedule(make_client(), now=utc(2027, 1, 5, 8, 0, 30))
        real_save = Schedule.save

        def crash(self: Schedule, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("scheduler killed between the job INSERT and the commit")

        monkeypatch.setattr(Schedule, "save", crash)
        with pytest.raises(RuntimeError):
            fire(utc(2027, 1, 5, 8, 1))
        assert not Job.objects.exists()
        monkeypatch.setattr(Schedule, "save", real_save)
        assert fire(utc(2027, 1, 5, 8, 1)) == 1  # still due: the next step fires it
        assert Job.objects.filter(schedule_id=schedule.pk).count() == 1


def run_scheduler(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """Step the firing loop from ``start`` to ``end`` as a scheduler would; the moments a job
    was fired."""
    fired, now = [], start
    while now <= end:
        if fire(now):  # overlap=allow: each schedule claimed is a job fired
            fired.append(now)
        now += every
    assert Job.objects.count() == len(fired)
    return fired


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # Spring forward, 2027-03-28: 02:30 does not exist; it fires at 03:00 CEST (01:00 UTC).
        (
            utc(2027, 3, 26, 12),
            [utc(2027, 3, 27, 1, 30), utc(2027, 3, 28, 1), utc(2027, 3, 29, 0, 30)],
        ),
        # Fall back, 2027-10-31: 02:30 happens twice; it fires once, at 02:30 CEST (00:30 UTC).
        (
            utc(2027, 10, 29, 12),
            [utc(2027, 10, 30, 0, 30), utc(2027, 10, 31, 0, 30), utc(2027, 11, 1, 1, 30)],
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_a_nightly_paris_schedule_fires_once_a_day_across_dst(
    start: datetime, expected: list[datetime]
) -> None:
    make_schedule(
        make_client(), now=start, cron="30 2 * * *", timezone="Europe/Paris", overlap="allow"
    )
    fired = run_scheduler(
        start, start + timedelta(days=3) - timedelta(hours=6), timedelta(minutes=10)
    )
    assert fired == expected


@pytest.mark.django_db(transaction=True)
def test_concurrent_firing_loops_fire_each_tick_exactly_once() -> None:
    """Two firing loops on their own connections, released together on the same due
    schedules, round after round: every tick of every schedule gives exactly one job."""
    start = utc(2027, 1, 5, 8, 0, 30)
    client = make_client()
    schedules = [make_schedule(client, now=start, overlap="allow") for _ in range(60)]
    rounds = 5
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            for round_ in range(1, rounds + 1):
                now = start + timedelta(minutes=round_)
                barrier.wait(timeout=30)
                # Small batches, so that the two loops interleave on the same rows.
                while firing.schedules_fire_due_batch(now=now, limit=7):
                    pass
                barrier.wait(timeout=30)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    per_schedule = {s.pk: 0 for s in schedules}
    for schedule_id in Job.objects.values_list("schedule_id", flat=True):
        per_schedule[schedule_id] += 1
    assert set(per_schedule.values()) == {rounds}
    assert set(Schedule.objects.values_list("next_run_at", flat=True)) == {
        start + timedelta(minutes=rounds + 1) - timedelta(seconds=30)
    }
