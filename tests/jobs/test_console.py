"""The operator console in the admin: the search line, the job page, bulk actions on every job
matching a filter (run by the maintenance step, in chunks, through the services), bulk
redelivery of failed webhooks; each refused to a role without its permission, each audited."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.jobs.bulk import bulk_actions_run
from apps.jobs.models import Job, JobBulkAction, JobEvent, JobStatus
from apps.jobs.search import SearchError, matching_jobs, parse_search, uuid7_floor
from apps.staff.models import AdminAuditEntry
from apps.webhooks.models import DeliveryStatus, WebhookDelivery
from tests.factories import (
    ApiClientFactory,
    JobFactory,
    StaffUserFactory,
    WebhookDeliveryFactory,
)

pytestmark = pytest.mark.django_db

LIST = "/admin/jobs/job/"


def browser_for(role: str) -> Client:
    browser = Client()
    browser.force_login(StaffUserFactory(role=role))
    return browser


def listed(response: Any) -> set[Any]:
    assert response.status_code == 200
    return {job.pk for job in response.context["cl"].result_list}


def _failed(**fields: Any) -> Job:
    return JobFactory(
        status=JobStatus.FAILED,
        attempts=3,
        finished_at=timezone.now(),
        error={"code": fields.pop("code", "handler_error"), "message": "boom"},
        **fields,
    )


def test_each_search_term_finds_exactly_its_jobs() -> None:
    acme, globex = ApiClientFactory(name="acme"), ApiClientFactory(name="globex")
    a = _failed(client=acme, code="timeout", metadata={"order": "1234"})
    b = JobFactory(client=globex, type="diagnostics.sleep", input={"message": "needle in here"})
    c = JobFactory(client=acme, status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    # Created three days ago: its id (a UUIDv7) says so too, as every job's does.
    then = timezone.now() - timedelta(days=3)
    old = JobFactory(client=acme, created_at=then, id=uuid.UUID(int=uuid7_floor(then).int | 1))
    browser = browser_for("viewer")

    cases = {
        "client:acme": {a.pk, c.pk, old.pk},
        f"client:{globex.pk}": {b.pk},
        "type:diagnostics.sleep": {b.pk},
        "status:failed": {a.pk},
        "error:timeout": {a.pk},
        "order=1234": {a.pk},
        "meta:order=1234": {a.pk},
        "order=999": set(),
        "client:globex input:needle": {b.pk},
        "created>-1d client:acme": {a.pk, c.pk},
        "created<-2d": {old.pk},
        "finished>-1h": {a.pk, c.pk},
    }
    for term, expected in cases.items():
        assert listed(browser.get(LIST, {"q": term})) == expected, term
    # The list filters and the search combine.
    assert listed(browser.get(LIST, {"q": "client:acme", "status__exact": "succeeded"})) == {c.pk}


def test_a_pasted_job_id_opens_the_job() -> None:
    job = JobFactory()
    response = browser_for("viewer").get(LIST, {"q": f"  {job.pk} "})
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}{job.pk}/change/"


def test_input_search_needs_a_narrowing_term_and_bad_terms_say_what_to_type() -> None:
    JobFactory(input={"message": "needle"})
    browser = browser_for("viewer")
    for term in ["input:needle", "status:nope", "created>yesterday", 'input:"unbalanced']:
        response = browser.get(LIST, {"q": term})
        assert listed(response) == set(), term
        shown = [str(m) for m in response.context["messages"]]
        assert shown, term
    with pytest.raises(SearchError, match="narrowing"):
        matching_jobs({"q": "input:needle"}).count()
    assert matching_jobs({"q": "created>-1d input:needle"}).count() == 1
    # Hostile input: a NUL byte is a clean 400 (the input guard), an over-long term a message.
    assert browser.get(LIST, {"q": "type:a\x00b"}).status_code == 400
    assert browser.get(LIST, {"q": "x" * 5000}).status_code == 200
    assert parse_search("").job_id is None


def test_the_job_page_is_read_only_pretty_escaped_and_linked() -> None:
    job = _failed(
        input={"message": "<script>alert(1)</script>", "z_big": "y" * 50_000},
        idempotency_key="batch-7",
    )
    JobEvent.objects.create(job=job, from_status="running", to_status="failed", at=job.created_at)
    WebhookDeliveryFactory(job=job, client_id=job.client_id, event_type="job.failed")
    response = browser_for("operator").get(f"{LIST}{job.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "more characters" in page  # the 50 000-character input is cut
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page
    assert "UTC" in page  # times carry their zone
    assert f"/admin/clients/apiclient/{job.client_id}/change/" in page
    assert "q=batch-7" in page  # the batch's jobs
    assert f"/admin/webhooks/webhookdelivery/?job={job.pk}" in page
    assert "job.failed" in page  # the deliveries inline
    assert "Timeline" in page
    # And the delivery list filtered by that job shows it.
    deliveries = browser_for("viewer").get("/admin/webhooks/webhookdelivery/", {"job": str(job.pk)})
    assert [d.job_id for d in deliveries.context["cl"].result_list] == [job.pk]


def test_empty_lists_say_what_to_do() -> None:
    browser = browser_for("viewer")
    page = browser.get(LIST, {"status__exact": "failed"}).content.decode()
    assert "No failed jobs match" in page
    assert "No jobs yet" in browser.get(LIST).content.decode()


def test_a_viewer_gets_no_bulk_buttons_and_a_forged_bulk_post_is_403_and_audited() -> None:
    job = _failed()
    browser = browser_for("viewer")
    page = browser.get(LIST, {"status__exact": "failed"}).content.decode()
    assert "conveyor-bulk-retry" not in page
    assert "conveyor-bulk-cancel" not in page
    assert browser.get(f"{LIST}bulk/retry/", {"status__exact": "failed"}).status_code == 403
    response = browser.post(f"{LIST}bulk/retry/", {"status__exact": "failed"})
    assert response.status_code == 403
    assert not JobBulkAction.objects.exists()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    entries = AdminAuditEntry.objects.filter(action="bulk_retry")
    assert entries.count() == 2  # the confirmation page and the POST
    entry = entries.latest("id")
    assert entry.denied
    assert "status__exact=failed" in entry.outcome


def test_bulk_retry_of_every_matching_job_confirms_the_count_runs_in_chunks_and_is_audited(
    max_statements: Any,
) -> None:
    acme = ApiClientFactory(name="acme", unlimited=True)
    targets = [_failed(client=acme, code="timeout") for _ in range(7)]
    other_code = _failed(client=acme, code="other")
    other_client = _failed(code="timeout")
    browser = browser_for("operator")
    query = {"status__exact": "failed", "q": "client:acme error:timeout"}

    page = browser.get(LIST, query).content.decode()
    assert "conveyor-bulk-retry" in page
    confirm = browser.get(f"{LIST}bulk/retry/", query)
    assert confirm.status_code == 200
    assert confirm.context["count"] == 7
    assert "<strong>7</strong> jobs match" in confirm.content.decode()

    response = browser.post(f"{LIST}bulk/retry/", query)
    assert response.status_code == 302
    bulk = JobBulkAction.objects.get()
    assert response["Location"] == f"/admin/jobs/jobbulkaction/{bulk.pk}/change/"
    assert (bulk.action, bulk.expected, bulk.status) == ("retry", 7, "pending")
    entry = AdminAuditEntry.objects.get(action="bulk_retry")
    assert not entry.denied
    assert entry.object_count == 7
    assert "error%3Atimeout" in entry.outcome or "error:timeout" in entry.outcome

    # The maintenance step runs it, a chunk of 3 at a time.
    assert bulk_actions_run(budget_seconds=30, chunk=3) == 7
    bulk.refresh_from_db()
    assert (bulk.status, bulk.done, bulk.skipped) == ("done", 7, 0)
    for job in targets:
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED
        assert job.attempts == 0
        assert job.error is None
        event = JobEvent.objects.filter(job=job).latest("id")
        assert event.to_status == "queued"
        assert event.details["reason"] == "retried by staff"
    for job in (other_code, other_client):
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
    progress = browser.get(f"/admin/jobs/jobbulkaction/{bulk.pk}/change/").content.decode()
    assert "finished: 7 changed" in progress
    # Nothing is left: another run does nothing.
    assert bulk_actions_run(budget_seconds=5) == 0


def test_bulk_cancel_leaves_finished_jobs_alone_and_jobs_created_after_confirmation() -> None:
    waiting = [JobFactory(type="diagnostics.sleep") for _ in range(3)]
    done = JobFactory(type="diagnostics.sleep", status=JobStatus.SUCCEEDED)
    browser = browser_for("operator")
    assert browser.get(f"{LIST}bulk/cancel/", {"type": "diagnostics.sleep"}).context["count"] == 3
    browser.post(f"{LIST}bulk/cancel/", {"type": "diagnostics.sleep"})
    late = JobFactory(type="diagnostics.sleep")
    bulk_actions_run(budget_seconds=30)
    assert {j.status for j in Job.objects.filter(pk__in=[j.pk for j in waiting])} == {"canceled"}
    done.refresh_from_db()
    late.refresh_from_db()
    assert (done.status, late.status) == ("succeeded", "queued")


def test_a_stalled_bulk_action_is_taken_over_from_its_cursor() -> None:
    jobs = [_failed() for _ in range(4)]
    operator = StaffUserFactory(role="operator")
    from apps.jobs.bulk import bulk_action_create

    bulk = bulk_action_create(user=operator, action="retry", query="status__exact=failed")
    JobBulkAction.objects.filter(pk=bulk.pk).update(
        status="running", heartbeat_at=timezone.now(), cursor=jobs[1].pk, done=2
    )
    assert bulk_actions_run(budget_seconds=5) == 0  # someone runs it
    JobBulkAction.objects.filter(pk=bulk.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    assert bulk_actions_run(budget_seconds=5) == 2
    statuses = [Job.objects.get(pk=j.pk).status for j in jobs]
    assert statuses == ["failed", "failed", "queued", "queued"]


def test_dead_letters_link_and_redrive_button() -> None:
    _failed()
    page = browser_for("operator").get(LIST, {"status__exact": "failed"}).content.decode()
    assert "Dead letters" in page
    assert "Redrive" in page


def test_bulk_redelivery_of_failed_webhooks_needs_its_permission_and_is_audited() -> None:
    failed = [WebhookDeliveryFactory(event_type="job.failed") for _ in range(3)]
    delivered = WebhookDeliveryFactory(event_type="job.failed", status=DeliveryStatus.DELIVERED)
    url = "/admin/webhooks/webhookdelivery/redeliver-failed/"
    viewer = browser_for("viewer")
    assert (
        "conveyor-bulk-redeliver"
        not in viewer.get("/admin/webhooks/webhookdelivery/").content.decode()
    )
    assert viewer.post(url, {"event_type__exact": "job.failed"}).status_code == 403
    assert AdminAuditEntry.objects.get(action="bulk_redeliver").denied
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count() == 0

    operator = browser_for("operator")
    assert operator.get(url, {"event_type__exact": "job.failed"}).context["count"] == 3
    assert operator.post(url, {"event_type__exact": "job.failed"}).status_code == 302
    statuses = set(
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in failed]).values_list(
            "status", flat=True
        )
    )
    assert statuses == {DeliveryStatus.PENDING}
    delivered.refresh_from_db()
    assert delivered.status == DeliveryStatus.DELIVERED
    entry = AdminAuditEntry.objects.get(action="bulk_redeliver", denied=False)
    assert entry.object_count == 3


def test_a_superuser_sees_the_bulk_actions_page() -> None:
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    page = browser.get("/admin/jobs/jobbulkaction/")
    assert page.status_code == 200


def test_a_readonly_field_added_later_gets_its_own_section(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.contrib import admin

    job_admin = admin.site._registry[Job]
    monkeypatch.setattr(type(job_admin), "readonly_fields", ("worker_note",), raising=False)
    monkeypatch.setattr(
        type(job_admin),
        "worker_note",
        admin.display(description="depends on")(lambda self, job: "nothing"),
        raising=False,
    )
    job = JobFactory()
    page = browser_for("viewer").get(f"{LIST}{job.pk}/change/").content.decode()
    assert "Dependencies" in page
    assert "Depends on" in page


def test_a_metadata_search_sorts_its_matches_and_a_bare_word_needs_no_join() -> None:
    acme = ApiClientFactory(name="acme")
    older = JobFactory(client=acme, metadata={"order": "7"})
    newer = JobFactory(client=acme, metadata={"order": "7"}, idempotency_key="acme")
    browser = browser_for("viewer")
    response = browser.get(LIST, {"q": "order=7"})
    changelist = response.context["cl"]
    assert list(changelist.queryset.query.order_by) == ["-created_at", "-id"]
    assert [job.pk for job in changelist.result_list] == [newer.pk, older.pk]
    # A column the operator sorts by is kept.
    sorted_by_type = browser.get(LIST, {"q": "order=7", "o": "2"}).context["cl"]
    assert "-created_at" not in sorted_by_type.queryset.query.order_by
    # "acme" is both a client's name and an idempotency key: both kinds are found, and the
    # query filters on the client's id, not through a join.
    words = browser.get(LIST, {"q": "acme"}).context["cl"]
    assert {job.pk for job in words.result_list} == {older.pk, newer.pk}
    assert "clients_apiclient" not in str(words.queryset.query).split("WHERE", 1)[1]
