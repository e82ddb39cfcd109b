"""Schedule metrics (apps/schedules/instrumentation.py): consumed ticks counted as fired or
skipped by reason with their lag, only once committed; the scrape's most overdue schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.clients.services import client_create
from apps.jobs.models import Job, JobStatus
from apps.schedules import firing
from apps.schedules.models import Schedule
from apps.schedules.services import schedule_create
from tests.support.prometheus import sample

pytestmark = pytest.mark.django_db

JOB = {"type": "diagnostics.echo", "input": {"message": "tick"}}
START = datetime(2027, 1, 5, 8, 0, 30, tzinfo=UTC)


def scrape(client: Any) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    return response.content.decode()


def make_client(name: str, **fields: Any) -> ApiClient:
    client, _ = client_create(name=name)
    for field, value in fields.items():
        setattr(client, field, value)
    client.save()
    return client


def make_schedule(client: ApiClient, name: str, **fields: Any) -> Schedule:
    data = {"name": name, "cron": "* * * * *", "job": JOB, **fields}
    return schedule_create(client=client, data=data, now=START)


def fire(now: datetime) -> int:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return firing.schedules_fire_due_batch(now=now)


FIRED = "conveyor_schedules_fired_total"
SKIPPED = "conveyor_schedules_skipped_total"


def test_ticks_are_counted_fired_or_skipped_by_reason_with_their_lag(anonymous: Any) -> None:
    make_schedule(make_client("acme"), "fires", overlap="allow")
    busy = make_schedule(make_client("busy"), "overlaps")  # overlap=skip
    full = make_client("full", max_active_jobs=1)
    Job.objects.create(
        client=full,
        type="diagnostics.echo",
        status=JobStatus.QUEUED,
        queue="default",
        max_attempts=1,
        timeout_seconds=10,
        created_at=START,
    )
    make_schedule(full, "at-quota", overlap="allow")
    invalid = make_schedule(make_client("gone"), "invalid")
    Schedule.objects.filter(pk=invalid.pk).update(job={"type": "removed.type"})
    before = scrape(anonymous)

    first_tick = busy.next_run_at
    assert first_tick == datetime(2027, 1, 5, 8, 1, tzinfo=UTC)
    # 08:01:10: all four due since 08:01, 10 s late. busy's job starts; the quota and the
    # removed type are skips.
    assert fire(first_tick + timedelta(seconds=10)) == 4
    # 08:05: every one due since 08:02 (three minutes late); busy's previous run is active.
    assert fire(datetime(2027, 1, 5, 8, 5, tzinfo=UTC)) == 4
    after = scrape(anonymous)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved(FIRED) == 3  # "fires" twice, "overlaps" once
    assert moved(SKIPPED, reason="overlap") == 1
    assert moved(SKIPPED, reason="quota_exceeded") == 2
    assert moved(SKIPPED, reason="invalid_job") == 2
    assert moved("conveyor_schedule_lag_seconds_count") == 8
    assert moved("conveyor_schedule_lag_seconds_sum") == pytest.approx(4 * 10 + 4 * 180)
    assert moved("conveyor_schedule_lag_seconds_bucket", le="10.0") == 4
    assert moved("conveyor_schedule_lag_seconds_bucket", le="300.0") == 8


def test_a_batch_rolled_back_counts_nothing(anonymous: Any) -> None:
    schedule = make_schedule(make_client("acme"), "fires")
    before = scrape(anonymous)

    def fire_then_die() -> None:
        with transaction.atomic():
            assert firing.schedules_fire_due_batch(now=schedule.next_run_at) == 1
            raise RuntimeError("the scheduler died before COMMIT")

    with TestCase.captureOnCommitCallbacks(execute=True), pytest.raises(RuntimeError):
        fire_then_die()
    after = scrape(anonymous)
    assert sample(after, FIRED) == sample(before, FIRED)
    assert sample(after, "conveyor_schedule_lag_seconds_count") == sample(
        before, "conveyor_schedule_lag_seconds_count"
    )
    assert not Job.objects.exists()


OVERDUE = "conveyor_schedules_overdue_seconds"


def test_the_scrape_reports_the_most_overdue_schedule(anonymous: Any) -> None:
    text = scrape(anonymous)
    assert OVERDUE in text
    assert sample(text, OVERDUE) == 0  # none at all

    now = timezone.now()
    late = make_schedule(make_client("acme"), "late")
    later = make_schedule(make_client("other"), "later")
    paused = make_schedule(make_client("paused"), "paused", enabled=False)
    away = make_schedule(make_client("away"), "away")
    ApiClient.objects.filter(name="away").update(is_active=False)
    Schedule.objects.filter(pk=late.pk).update(next_run_at=now + timedelta(minutes=1))
    Schedule.objects.filter(pk=later.pk).update(next_run_at=now + timedelta(hours=1))
    assert sample(scrape(anonymous), OVERDUE) == 0  # none due yet

    Schedule.objects.filter(pk=late.pk).update(next_run_at=now - timedelta(minutes=5))
    # Neither a disabled schedule nor an inactive client's (they wait, by design) counts.
    Schedule.objects.filter(pk=paused.pk).update(next_run_at=now - timedelta(days=2))
    Schedule.objects.filter(pk=away.pk).update(next_run_at=now - timedelta(days=3))
    assert 300 <= sample(scrape(anonymous), OVERDUE) < 600
