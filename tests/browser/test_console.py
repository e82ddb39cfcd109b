"""The operator console in a real browser (Chromium through Playwright) against a live server
and a real Celery worker: a viewer sees but cannot act (no buttons; a forged POST is 403), an
operator bulk-retries a filtered set of failed jobs and sees them run."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.jobs.models import Job, JobStatus
from apps.staff.models import AdminAuditEntry
from tests.factories import ApiClientFactory, JobFactory
from tests.support.browser import log_in, staff
from tests.support.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def failed_jobs(client: ApiClient, count: int, code: str = "handler_error") -> list[Job]:
    return [
        JobFactory(
            client=client,
            status=JobStatus.FAILED,
            attempts=3,
            finished_at=timezone.now(),
            error={"code": code, "message": "boom"},
        )
        for _ in range(count)
    ]


def test_a_viewer_sees_the_console_but_cannot_act(page: Any) -> None:
    acme = ApiClientFactory(name="acme")
    job = failed_jobs(acme, 2)[0]
    log_in(page, staff("viewer"))

    page.goto("/admin/jobs/job/?status__exact=failed")
    assert page.locator("#result_list tbody tr").count() == 2
    assert page.locator("#conveyor-bulk-retry").count() == 0
    assert page.locator("#conveyor-bulk-cancel").count() == 0
    assert page.locator("select[name=action]").count() == 0

    # The search line: a pasted id opens the job, whose page has no save button.
    page.fill("#searchbar", str(job.pk))
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(rf".*/admin/jobs/job/{job.pk}/change/$"))
    assert page.get_by_text("Timeline").count() >= 1
    assert page.locator("input[name=_save]").count() == 0
    assert "UTC" in page.inner_text("#content")

    # A forged POST with the viewer's session and a valid CSRF token is refused.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        "/admin/jobs/job/bulk/retry/",
        form={"csrfmiddlewaretoken": token, "status__exact": "failed"},
        headers={"Referer": page.url},
    )
    assert response.status == 403
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert AdminAuditEntry.objects.filter(action="bulk_retry", denied=True).exists()


def test_an_operator_bulk_retries_a_filtered_set_and_sees_it_run(
    page: Any, console_worker: Any
) -> None:
    acme, globex = ApiClientFactory(name="acme"), ApiClientFactory(name="globex")
    targets = failed_jobs(acme, 4, code="upstream_502")
    untouched = failed_jobs(acme, 1, code="other") + failed_jobs(globex, 1, code="upstream_502")
    log_in(page, staff("operator"))

    page.goto("/admin/jobs/job/?status__exact=failed")
    page.fill("#searchbar", "client:acme error:upstream_502")
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    assert page.locator("#result_list tbody tr").count() == 4

    page.click("#conveyor-bulk-retry")
    assert "4 jobs match" in page.inner_text("#conveyor-bulk-count")
    page.click("#conveyor-bulk-confirm")
    page.wait_for_url(re.compile(r".*/admin/jobs/jobbulkaction/\d+/change/$"))
    # The page refreshes itself until the maintenance worker has run the action.
    page.get_by_text("finished: 4 changed").wait_for(timeout=30_000)

    # ... and the worker runs the retried jobs.
    def succeeded() -> bool:
        return Job.objects.filter(pk__in=[j.pk for j in targets], status="succeeded").count() == 4

    wait_for(succeeded, timeout=30)
    page.goto("/admin/jobs/job/?q=client%3Aacme&status__exact=succeeded")
    assert page.locator("#result_list tbody tr").count() == 4
    assert {Job.objects.get(pk=j.pk).status for j in untouched} == {"failed"}
    entry = AdminAuditEntry.objects.get(action="bulk_retry", denied=False)
    assert entry.object_count == 4
    assert entry.username == "operator-1"
