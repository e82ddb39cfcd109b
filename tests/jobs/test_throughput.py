"""The finished-jobs rollup (apps/jobs/throughput.py): counts per minute, queue, type and
outcome; incremental, idempotent, late outcomes counted, old rows purged."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from apps.jobs.models import FinishedCount, FinishedCountMark, JobStatus
from apps.jobs.throughput import MAX_SPAN, finished_counts_roll_up
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def _at(minute: datetime, seconds: int = 0) -> datetime:
    return minute + timedelta(seconds=seconds)


def counts() -> dict[tuple[datetime, str, str, str], int]:
    return {(r.minute, r.queue, r.type, r.outcome): r.count for r in FinishedCount.objects.all()}


def finished(status: str, at: datetime, *, queue: str = "default", type: str = "a") -> None:
    JobFactory(status=status, finished_at=at, queue=queue, type=type)


def caught_up(now: datetime) -> None:
    """Run the step until it has counted up to ``now`` (a first run starts a day back)."""
    for _ in range(100):
        finished_counts_roll_up(now=now)
        if FinishedCountMark.objects.get().counted_to >= now:
            return
    raise AssertionError("the rollup does not catch up")


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(second=30, microsecond=0)


def test_finished_jobs_are_counted_per_minute_queue_type_and_outcome(now: datetime) -> None:
    minute = now.replace(second=0) - timedelta(minutes=3)
    finished(JobStatus.SUCCEEDED, _at(minute, 1))
    finished(JobStatus.SUCCEEDED, _at(minute, 59))
    finished(JobStatus.FAILED, _at(minute, 10))
    finished(JobStatus.SUCCEEDED, _at(minute, 5), queue="heavy", type="b")
    finished(JobStatus.CANCELED, _at(minute, 70))
    JobFactory(status=JobStatus.RUNNING)  # not finished: not counted
    JobFactory(status=JobStatus.QUEUED)

    caught_up(now)

    assert counts() == {
        (minute, "default", "a", "succeeded"): 2,
        (minute, "default", "a", "failed"): 1,
        (minute, "heavy", "b", "succeeded"): 1,
        (minute + timedelta(minutes=1), "default", "a", "canceled"): 1,
    }
    assert FinishedCountMark.objects.get().counted_to == now


def test_running_the_step_twice_counts_each_job_once(now: datetime) -> None:
    finished(JobStatus.SUCCEEDED, now - timedelta(seconds=20))
    caught_up(now)
    finished_counts_roll_up(now=now)
    finished_counts_roll_up(now=now + timedelta(seconds=15))
    assert sum(counts().values()) == 1


def test_an_outcome_recorded_late_is_counted_by_the_next_run(now: datetime) -> None:
    finished(JobStatus.SUCCEEDED, now - timedelta(seconds=50))
    caught_up(now)
    # Recorded after that run, with finished_at (when the handler ended) before it.
    finished(JobStatus.FAILED, now - timedelta(seconds=40))
    finished(JobStatus.SUCCEEDED, now + timedelta(seconds=5))
    finished_counts_roll_up(now=now + timedelta(seconds=20))
    by_outcome: dict[str, int] = {}
    for (_, _, _, outcome), n in counts().items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    assert by_outcome == {"succeeded": 2, "failed": 1}


def test_each_run_recounts_only_its_window(now: datetime) -> None:
    caught_up(now)
    old = now - timedelta(hours=2)
    # A job finished long before the mark is outside the recount window: a run does not scan
    # the whole table again.
    finished(JobStatus.SUCCEEDED, old)
    result = finished_counts_roll_up(now=now + timedelta(seconds=10), recount=timedelta(minutes=5))
    assert result.start == (now - timedelta(minutes=5)).replace(second=0)
    assert counts() == {}


def test_a_first_run_counts_the_last_day_and_catching_up_is_bounded(now: datetime) -> None:
    finished(JobStatus.SUCCEEDED, now - timedelta(hours=23, minutes=30))
    finished(JobStatus.SUCCEEDED, now - timedelta(minutes=1))
    first = finished_counts_roll_up(now=now, recount=timedelta(0))
    assert first.end - first.start <= MAX_SPAN
    assert sum(counts().values()) == 1
    runs = 1
    while FinishedCountMark.objects.get().counted_to < now:
        finished_counts_roll_up(now=now, recount=timedelta(0))
        runs += 1
    assert runs == 25
    assert sum(counts().values()) == 2


def test_counts_older_than_the_retention_are_purged(now: datetime, settings: object) -> None:
    FinishedCount.objects.create(
        minute=now.replace(second=0) - timedelta(hours=60),
        queue="default",
        type="a",
        outcome="succeeded",
        count=3,
    )
    kept = now.replace(second=0) - timedelta(hours=30)
    FinishedCount.objects.create(
        minute=kept, queue="default", type="a", outcome="succeeded", count=4
    )
    result = finished_counts_roll_up(now=now)
    caught_up(now)
    assert result.purged == 1
    assert list(FinishedCount.objects.values_list("minute", "count")) == [(kept, 4)]


def test_the_scheduler_runs_the_step(now: datetime) -> None:
    from django.conf import settings

    from workers.tasks import count_finished

    entry = settings.CELERY_BEAT_SCHEDULE["count-finished"]
    assert entry["task"] == count_finished.name
    assert entry["options"]["queue"] == "maintenance"
    finished(JobStatus.SUCCEEDED, timezone.now() - timedelta(seconds=5))
    for _ in range(30):
        count_finished()
    assert sum(counts().values()) == 1
