"""The operator dashboard on the admin index and its JSON refresh: who sees it, what it says
(from a small known data set), the needs-attention list, empty states, bounded queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.jobs.fleet import worker_gone, worker_heartbeat
from apps.jobs.models import JobStatus
from apps.jobs.throughput import finished_counts_roll_up
from apps.webhooks.models import DeliveryStatus
from tests.factories import ApiClientFactory, JobFactory, StaffUserFactory, WebhookDeliveryFactory

pytestmark = pytest.mark.django_db

ROLES = ("viewer", "operator", "admin")
DATA_URL = "/admin/dashboard.json"


def browser_for(role: str | None) -> Client:
    browser = Client()
    browser.force_login(StaffUserFactory(role=role))
    return browser


def figures(browser: Client) -> dict[str, Any]:
    response = browser.get(DATA_URL)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body["figures"]


def queue(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in data["queues"] if q["name"] == name)


def kinds(data: dict[str, Any]) -> set[str]:
    return {item["kind"] for item in data["attention"]}


@pytest.fixture
def viewer() -> Client:
    return browser_for("viewer")


@pytest.fixture
def live_default_worker() -> Any:
    worker_heartbeat(name="w1@test", queues=["default"], processes=2)
    yield
    worker_gone(name="w1@test")


# --- Who sees it ----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_dashboard_and_its_figures(role: str) -> None:
    browser = browser_for(role)
    page = browser.get("/admin/")
    assert page.status_code == 200
    assert b'id="conveyor-dashboard"' in page.content
    assert b'id="cv-attention"' in page.content
    assert b"dashboard/dashboard.js" in page.content
    assert "queues" in figures(browser)


def test_a_staff_user_without_a_role_gets_no_dashboard() -> None:
    browser = browser_for(None)
    page = browser.get("/admin/")
    assert page.status_code == 200
    assert b"conveyor-dashboard" not in page.content
    response = browser.get(DATA_URL)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_a_user_without_staff_access_gets_nothing() -> None:
    user = User.objects.create_user("someone", password="pw")
    browser = Client()
    browser.force_login(user)
    page = browser.get("/admin/")
    assert page.status_code == 302
    assert "/admin/login/" in page["Location"]
    assert browser.get(DATA_URL).status_code == 403


def test_an_anonymous_visitor_gets_nothing() -> None:
    browser = Client()
    assert browser.get("/admin/").status_code == 302
    assert browser.get(DATA_URL).status_code == 403


def test_the_data_endpoint_only_answers_get(viewer: Client) -> None:
    assert viewer.post(DATA_URL).status_code == 405


# --- The figures ----------------------------------------------------------------------------------
def test_the_figures_of_a_known_data_set(viewer: Client, live_default_worker: None) -> None:
    now = timezone.now()
    busy = ApiClientFactory(name="busy-co")
    for minutes in (3, 2, 1):
        JobFactory(client=busy, created_at=now - timedelta(minutes=minutes))
    JobFactory(queue="heavy", created_at=now - timedelta(seconds=30))
    JobFactory(status=JobStatus.RUNNING, client=busy, started_at=now)
    JobFactory(status=JobStatus.QUEUED, held=True)  # held for an inactive client: not waiting
    for _ in range(3):
        JobFactory(status=JobStatus.SUCCEEDED, type="a", finished_at=now - timedelta(minutes=5))
    JobFactory(status=JobStatus.FAILED, type="a", finished_at=now - timedelta(minutes=5))
    JobFactory(status=JobStatus.FAILED, type="b", finished_at=now - timedelta(hours=3))
    JobFactory(status=JobStatus.SUCCEEDED, type="c", finished_at=now - timedelta(hours=30))
    for _ in range(30):
        finished_counts_roll_up()

    data = figures(viewer)

    default = queue(data, "default")
    assert default["waiting"] == 3
    assert default["running"] == 1
    assert 170 <= default["oldest_wait_seconds"] <= 200
    assert default["workers"] == 1
    assert default["processes"] == 2
    assert default["last_hour"] == {"succeeded": 3, "failed": 1, "per_minute": round(4 / 60, 2)}
    assert default["last_24h"]["succeeded"] == 3
    assert default["last_24h"]["failed"] == 2
    heavy = queue(data, "heavy")
    assert (heavy["waiting"], heavy["running"], heavy["workers"]) == (1, 0, 0)
    rates = {t["type"]: t["failure_rate"] for t in data["job_types"]}
    assert rates == {"a": 0.25, "b": 1.0}  # c finished more than 24 h ago
    assert data["clients"][0]["client"] == "busy-co"
    assert (data["clients"][0]["running"], data["clients"][0]["waiting"]) == (1, 3)


def test_the_page_shows_times_with_their_zone_and_charts_as_svg(viewer: Client) -> None:
    JobFactory(status=JobStatus.SUCCEEDED, finished_at=timezone.now() - timedelta(minutes=2))
    for _ in range(30):
        finished_counts_roll_up()
    page = viewer.get("/admin/").content.decode()
    assert " UTC</time>" in page
    assert '<svg class="cv-chart"' in page
    assert 'class="cv-ok"' in page


# --- Needs attention ------------------------------------------------------------------------------
def test_a_queue_without_a_live_worker_needs_attention_until_one_starts(viewer: Client) -> None:
    JobFactory(queue="default")
    data = figures(viewer)
    stuck = [a for a in data["attention"] if a["kind"] == "stuck_queue"]
    assert len(stuck) == 1
    assert "default" in stuck[0]["text"]
    assert stuck[0]["url"] == "/admin/jobs/job/?status__exact=queued&queue=default"
    assert viewer.get(stuck[0]["url"]).status_code == 200
    worker_heartbeat(name="w2@test", queues=["default"], processes=1)
    try:
        assert "stuck_queue" not in kinds(figures(viewer))
    finally:
        worker_gone(name="w2@test")


def test_a_queue_where_nothing_starts_needs_attention(
    viewer: Client, live_default_worker: None, settings: Any
) -> None:
    settings.DASHBOARD_STUCK_AFTER_SECONDS = 60
    job = JobFactory(created_at=timezone.now() - timedelta(minutes=5))
    assert "stuck_queue" in kinds(figures(viewer))
    job.status = JobStatus.RUNNING
    job.started_at = timezone.now()
    job.save()
    assert "stuck_queue" not in kinds(figures(viewer))


def test_a_job_past_its_timeout_needs_attention_until_it_ends(
    viewer: Client, live_default_worker: None
) -> None:
    job = JobFactory(
        status=JobStatus.RUNNING,
        timeout_seconds=60,
        started_at=timezone.now() - timedelta(minutes=5),
    )
    JobFactory(status=JobStatus.RUNNING, timeout_seconds=600, started_at=timezone.now())
    overdue = [a for a in figures(viewer)["attention"] if a["kind"] == "overdue_jobs"]
    assert [a["count"] for a in overdue] == [1]
    assert overdue[0]["url"] == "/admin/jobs/job/?status__exact=running&queue=default"
    job.status = JobStatus.FAILED
    job.finished_at = timezone.now()
    job.save()
    assert "overdue_jobs" not in kinds(figures(viewer))


def test_failing_webhook_deliveries_need_attention_until_delivered(viewer: Client) -> None:
    retrying = WebhookDeliveryFactory(status=DeliveryStatus.PENDING, attempts=2)
    failed = WebhookDeliveryFactory(status=DeliveryStatus.FAILED, attempts=10)
    WebhookDeliveryFactory(status=DeliveryStatus.PENDING, attempts=0)  # not tried yet: fine
    data = figures(viewer)
    assert data["deliveries"] == {"retrying": 1, "failed": 1}
    urls = {a["kind"]: a["url"] for a in data["attention"]}
    assert urls["deliveries_retrying"] == "/admin/webhooks/webhookdelivery/?status__exact=pending"
    assert urls["deliveries_failed"] == "/admin/webhooks/webhookdelivery/?status__exact=failed"
    for delivery in (retrying, failed):
        delivery.status = DeliveryStatus.DELIVERED
        delivery.save()
    data = figures(viewer)
    assert not {"deliveries_retrying", "deliveries_failed"} & kinds(data)


def test_all_clear_when_nothing_needs_attention(viewer: Client) -> None:
    page = viewer.get("/admin/").content.decode()
    assert "Nothing needs attention" in page
    assert figures(viewer)["attention"] == []


# --- Empty states ---------------------------------------------------------------------------------
def test_without_jobs_or_workers_the_page_says_what_to_do(viewer: Client) -> None:
    page = viewer.get("/admin/").content.decode()
    assert 'id="cv-no-jobs"' in page
    assert "/api/v1/jobs" in page
    assert 'id="cv-no-workers"' in page
    assert "celery -A config worker" in page


def test_the_empty_states_go_once_there_are_jobs_and_workers(
    viewer: Client, live_default_worker: None
) -> None:
    JobFactory()
    page = viewer.get("/admin/").content.decode()
    assert 'id="cv-no-jobs"' not in page
    assert 'id="cv-no-workers"' not in page


# --- Bounded work ---------------------------------------------------------------------------------
def test_the_number_of_queries_does_not_grow_with_queues_types_or_clients(
    viewer: Client, django_assert_max_num_queries: Any
) -> None:
    now = timezone.now()
    for n in range(12):
        client = ApiClientFactory()
        JobFactory(client=client, queue=f"q{n}", type=f"t{n}")
        JobFactory(client=client, queue=f"q{n}", status=JobStatus.RUNNING, started_at=now)
        JobFactory(
            client=client,
            queue=f"q{n}",
            type=f"t{n}",
            status=JobStatus.FAILED,
            finished_at=now - timedelta(minutes=n),
        )
    for _ in range(30):
        finished_counts_roll_up()
    # Session, user and permissions (4), the dashboard's reads (10), the index's recent actions.
    with django_assert_max_num_queries(14):
        figures(viewer)
    with django_assert_max_num_queries(15):
        assert viewer.get("/admin/").status_code == 200


# --- Names ----------------------------------------------------------------------------------------
def test_the_index_names_things_as_the_product_does(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert "Conveyor operations" in page
    for name in ("API clients", "API keys", "Webhook deliveries", "Admin audit log", "Schedules"):
        assert name in page, name
    assert "Api client" not in page
    assert "Django administration" not in page
