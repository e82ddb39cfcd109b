"""The operator dashboard in a real browser (Chromium through Playwright) against a live server: a
viewer sees the figures on the admin index, they change without a reload when the data does
(the page's JS poll, DASHBOARD_REFRESH_SECONDS shortened here), and a "needs attention" entry
leads to the job list filtered to the jobs it counts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs.models import JobStatus
from apps.jobs.throughput import finished_counts_roll_up
from tests.factories import ApiClientFactory, JobFactory
from tests.support.browser import log_in, staff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def finished(client: Any, status: str, count: int) -> None:
    for _ in range(count):
        JobFactory(
            client=client,
            status=status,
            attempts=1,
            started_at=timezone.now() - timedelta(seconds=2),
            finished_at=timezone.now(),
            error={"code": "handler_error", "message": "boom"} if status == "failed" else None,
        )


def count_finished() -> None:
    """The rollup's runs until it has counted up to now (a first run starts a day back)."""
    target = timezone.now()
    for _ in range(40):
        if finished_counts_roll_up().end >= target:
            return
    raise AssertionError("the rollup did not catch up")


def test_a_viewer_sees_the_dashboard_refresh_itself_and_follows_an_attention_link(
    page: Any, settings: Any
) -> None:
    settings.DASHBOARD_REFRESH_SECONDS = 0.5
    acme = ApiClientFactory(name="acme")
    finished(acme, JobStatus.SUCCEEDED, 3)
    finished(acme, JobStatus.FAILED, 1)
    count_finished()
    overdue = JobFactory(
        client=acme,
        status=JobStatus.RUNNING,
        timeout_seconds=60,
        started_at=timezone.now() - timedelta(minutes=10),
    )
    log_in(page, staff("viewer"))

    # The admin index is the dashboard: the queue's figures, drawn as bars, and its attention list.
    row = page.locator('#conveyor-dashboard tr.cv-queue[data-queue="default"]')
    hour = row.locator(".cv-hour")
    assert re.search(r"3 succeeded, 1 failed", hour.inner_text())
    assert hour.locator("svg rect.cv-ok").count() >= 1
    assert hour.locator("svg rect.cv-failed").count() >= 1
    assert "1 past timeout" in row.locator(".cv-running").inner_text()
    attention = page.locator('#cv-attention li[data-kind="overdue_jobs"] a')
    assert "1 job(s) running past their timeout" in attention.inner_text()
    assert "acme" in page.inner_text("#cv-clients")

    # New outcomes reach the open page by its poll, not by a reload: a mark set on the window
    # survives, and the panel says the new counts.
    page.evaluate("window.conveyorNotReloaded = true")
    finished(acme, JobStatus.FAILED, 2)
    count_finished()
    hour.locator("span.cv-bad", has_text="3 failed").wait_for(timeout=15_000)
    assert "3 succeeded" in hour.inner_text()
    assert page.evaluate("window.conveyorNotReloaded") is True
    assert page.get_attribute("#conveyor-dashboard", "data-refreshed") == "1"

    # The attention entry opens the job list filtered to the jobs it counts.
    page.locator('#cv-attention li[data-kind="overdue_jobs"] a').click()
    page.wait_for_url(re.compile(r".*/admin/jobs/job/\?status__exact=running&queue=default$"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert str(overdue.pk) in rows.first.inner_text()

    # The job it lists ends: at the next refresh the dashboard no longer asks for attention.
    overdue.status = JobStatus.SUCCEEDED
    overdue.finished_at = timezone.now()
    overdue.save()
    page.go_back()
    page.locator("#cv-attention .cv-all-clear").wait_for(timeout=15_000)
