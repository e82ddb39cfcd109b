"""queue_stats: broker depth per queue (real Redis) and jobs per status."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from apps.jobs.dispatch import publish_jobs
from apps.jobs.models import JobStatus
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_queue_stats_reports_depth_and_statuses(fresh_queue: Any) -> None:
    queue = fresh_queue()
    queued = [JobFactory(status=JobStatus.QUEUED, queue=queue) for _ in range(3)]
    JobFactory(status=JobStatus.FAILED)
    publish_jobs(queued)
    out = StringIO()
    call_command("queue_stats", "--json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["statuses"]["queued"] == 3
    assert stats["statuses"]["failed"] == 1
    assert stats["queues"][queue]["depth"] == 3
    assert stats["queues"][queue]["queued"] == 3
    assert stats["queues"][queue]["oldest_queued_age_seconds"] is None or (
        stats["queues"][queue]["oldest_queued_age_seconds"] >= 0
    )
    assert "default" in stats["queues"]


def test_queue_stats_table() -> None:
    JobFactory(status=JobStatus.QUEUED)
    out = StringIO()
    call_command("queue_stats", stdout=out)
    text = out.getvalue()
    assert "default" in text
    assert "queued" in text
    assert "oldest wait s" in text
    assert "wake-up messages, not jobs" in text


def test_queue_stats_shows_the_busiest_clients_running_and_waiting() -> None:
    from tests.factories import ApiClientFactory

    busy, quiet = ApiClientFactory(name="busy"), ApiClientFactory(name="quiet")
    for _ in range(3):
        JobFactory(client=busy, status=JobStatus.QUEUED)
    JobFactory(client=busy, status=JobStatus.RUNNING)
    JobFactory(client=quiet, status=JobStatus.RUNNING)
    JobFactory(client=quiet, status=JobStatus.SUCCEEDED)
    out = StringIO()
    call_command("queue_stats", "--json", stdout=out)
    clients = json.loads(out.getvalue())["clients"]
    assert clients == [
        {"queue": "default", "client": "busy", "running": 1, "waiting": 3},
        {"queue": "default", "client": "quiet", "running": 1, "waiting": 0},
    ]
    out = StringIO()
    call_command("queue_stats", stdout=out)
    line = next(line for line in out.getvalue().splitlines() if line.startswith("busy "))
    assert line.split() == ["busy", "default", "1", "3"]
