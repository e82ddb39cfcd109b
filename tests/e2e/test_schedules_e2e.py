"""Two real scheduler processes (Celery beat + the maintenance worker, as the Procfile runs
them) on the same database and broker: every tick of every schedule fires exactly one job."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from apps.clients.services import client_create
from apps.jobs.models import Job
from apps.schedules.models import Schedule
from apps.schedules.services import schedule_create
from tests.support.processes import start_scheduler, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEDULES = 40
ROUNDS = 4


def test_two_schedulers_fire_each_tick_exactly_once(tmp_path: Path) -> None:
    client, _ = client_create(name="acme", unlimited=True)
    for index in range(SCHEDULES):
        schedule_create(
            client=client,
            data={
                "name": f"yearly-{index}",
                # Due only when the test makes it due: no real tick falls inside the test.
                "cron": "0 0 1 1 *",
                "job": {"type": "diagnostics.echo", "input": {"message": str(index)}},
                "overlap": "allow",
            },
        )
    schedulers = []
    try:
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            schedulers.append(start_scheduler(tmp_path / name, SCHEDULER_FIRE_EVERY_SECONDS="0.2"))
        for round_ in range(1, ROUNDS + 1):
            due = timezone.now() - timedelta(seconds=1)
            Schedule.objects.update(next_run_at=due)  # a tick of every schedule has come
            wait_for(
                lambda due=due: not Schedule.objects.filter(next_run_at__lte=due).exists(),
                timeout=60,
            )
            assert Job.objects.count() == SCHEDULES * round_
    finally:
        for process in schedulers:
            process.stop()
    logs = [process.log_path.read_text(errors="replace") for process in schedulers]
    per_schedule: dict[object, int] = {}
    for schedule_id in Job.objects.values_list("schedule_id", flat=True):
        per_schedule[schedule_id] = per_schedule.get(schedule_id, 0) + 1
    assert len(per_schedule) == SCHEDULES
    assert set(per_schedule.values()) == {ROUNDS}
    # Both schedulers took part in firing (each logs the batches it fired).
    assert all("schedules:" in log for log in logs), [log[-2000:] for log in logs]
