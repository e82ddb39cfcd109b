"""The outbox's rules, written by the job store's statements: the webhook-id, the snapshot, the
progress throttle."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.representation import job_to_dict
from apps.webhooks.models import WebhookDelivery
from apps.webhooks.outbox import PROGRESS_EVERY, job_from_snapshot, job_snapshot
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

URL = "https://receiver.example/hook"


def _running(**fields: object) -> Job:
    job = services.job_start(
        job_id=JobFactory(webhook_url=URL, **fields).pk, worker="w", task_id="t"
    )
    assert job is not None
    return job


def test_a_delivery_is_named_by_its_job_and_version_and_snapshots_the_changed_row() -> None:
    job = _running(webhook_events=["job.started", "job.succeeded"])
    done = services.job_succeed(job=job, result={"n": 1})
    assert done is not None
    started, succeeded = WebhookDelivery.objects.order_by("sequence")
    assert [d.webhook_id for d in (started, succeeded)] == [
        f"msg_{job.pk.hex}_{job.version}",
        f"msg_{job.pk.hex}_{done.version}",
    ]
    assert (succeeded.url, succeeded.client_id, succeeded.created_at) == (
        URL,
        job.client_id,
        succeeded.next_attempt_at,
    )
    # The snapshot is the row as the change left it, and reads back as that job.
    assert succeeded.job_snapshot == job_snapshot(job.pk)
    assert job_to_dict(job_from_snapshot(succeeded.job_snapshot)) == job_to_dict(done)
    assert job_to_dict(job_from_snapshot(started.job_snapshot))["status"] == "running"


def test_progress_is_written_at_most_once_per_interval_per_job() -> None:
    job = _running(webhook_events=["job.progress"])
    other = _running(webhook_events=["job.progress"])
    for percent in (10, 20, 30):
        services.job_report_progress(job=job, percent=percent)
    services.job_report_progress(job=other, percent=50)
    assert sorted(WebhookDelivery.objects.values_list("job_id", flat=True)) == sorted(
        [job.pk, other.pk]
    )
    # Once the interval has passed, the next progress is written again.
    WebhookDelivery.objects.update(
        created_at=F("created_at") - PROGRESS_EVERY - timedelta(milliseconds=1)
    )
    services.job_report_progress(job=job, percent=40)
    assert WebhookDelivery.objects.filter(job_id=job.pk).count() == 2
