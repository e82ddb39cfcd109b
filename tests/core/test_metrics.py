"""/metrics: access rules, the exposition format, and counters that move with the work."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import TestCase
from prometheus_client.parser import text_string_to_metric_families

from apps.core.metrics import access_allowed
from apps.jobs import services
from apps.jobs.models import JobStatus
from tests.factories import JobFactory
from tests.support.prometheus import sample
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

NETWORKS = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def scrape(client: Any, **extra: Any) -> str:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:10.1.2.3", True),
        ("192.168.1.9", True),
        ("203.0.113.5", False),
        ("2001:db8::1", False),
        ("not-an-address", False),
    ],
)
def test_networks_decide_for_direct_requests(address: str, allowed: bool) -> None:
    environ = {"REMOTE_ADDR": address}
    assert access_allowed(environ, allowed_networks=NETWORKS, token="") is allowed


def test_a_request_through_a_proxy_needs_the_token() -> None:
    environ = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    assert not access_allowed(environ, allowed_networks=NETWORKS, token="")
    environ["HTTP_AUTHORIZATION"] = "Bearer s3cret"
    assert access_allowed(environ, allowed_networks=NETWORKS, token="s3cret")


def test_metrics_parse_and_are_open_to_loopback(anonymous: Any) -> None:
    families = {f.name for f in text_string_to_metric_families(scrape(anonymous))}
    assert {
        "conveyor_http_request_duration_seconds",
        "conveyor_jobs_submitted",
        "conveyor_jobs_finished",
        "conveyor_job_run_seconds",
        "conveyor_job_queue_wait_seconds",
        "conveyor_webhook_deliveries",
        "conveyor_webhook_delivery_seconds",
        "conveyor_queue_depth",
        "conveyor_queue_jobs",
        "conveyor_queue_oldest_job_age_seconds",
        "conveyor_metrics_source_up",
    } <= families


def test_metrics_from_elsewhere_are_403_without_the_token(anonymous: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    public = {"REMOTE_ADDR": "203.0.113.5"}
    response = anonymous.get("/metrics", **public)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    wrong = anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", **public)
    assert wrong.status_code == 403
    assert scrape(anonymous, HTTP_AUTHORIZATION="Bearer s3cret-token", **public)


def test_without_a_token_configured_no_bearer_opens_it(anonymous: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = anonymous.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 403


def test_metrics_off_is_404(anonymous: Any, settings: Any) -> None:
    settings.METRICS_ENABLED = False
    assert anonymous.get("/metrics").status_code == 404


def test_request_histogram_counts_by_route_pattern_method_and_status(
    tenant: Tenant, anonymous: Any
) -> None:
    route = {"route": "api/v1/jobs/<str:job_id>", "method": "GET"}
    before = scrape(anonymous)
    job_id = tenant.submit().json()["id"]
    for _ in range(3):
        assert tenant.get(f"/api/v1/jobs/{job_id}").status_code == 200
    tenant.get("/api/v1/jobs/not-a-job")
    after = scrape(anonymous)
    name = "conveyor_http_request_duration_seconds_count"
    assert (
        sample(after, name, **route, status="200") - sample(before, name, **route, status="200")
        == 3
    )
    assert (
        sample(after, name, **route, status="404") - sample(before, name, **route, status="404")
        == 1
    )
    submitted = {"route": "api/v1/jobs", "method": "POST", "status": "202"}
    assert sample(after, name, **submitted) - sample(before, name, **submitted) == 1


def test_job_counters_move_with_submissions_and_outcomes(tenant: Tenant, anonymous: Any) -> None:
    echo = {"type": "diagnostics.echo"}
    before = scrape(anonymous)
    tenant.submit()
    tenant.post(
        "/api/v1/jobs/batch",
        {"jobs": [{"type": "diagnostics.echo", "input": {"message": "x"}}] * 2},
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        job = services.job_claim_next(queue="default")
        assert job is not None
        services.job_succeed(job=job, result={})
    with TestCase.captureOnCommitCallbacks(execute=True):
        job = services.job_claim_next(queue="default")
        assert job is not None
        services.job_fail(job=job, code="x", message="y", retryable=False)
    after = scrape(anonymous)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("conveyor_jobs_submitted_total", **echo, status="queued") == 3
    assert moved("conveyor_jobs_finished_total", **echo, status="succeeded") == 1
    assert moved("conveyor_jobs_finished_total", **echo, status="failed") == 1
    assert moved("conveyor_job_run_seconds_count", **echo) == 2
    assert moved("conveyor_job_queue_wait_seconds_count", **echo) == 2


def test_queue_gauges_count_waiting_jobs_and_the_oldest_wait(anonymous: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    JobFactory(
        status=JobStatus.QUEUED, queue="default", enqueued_at=timezone.now() - timedelta(minutes=2)
    )
    JobFactory(status=JobStatus.QUEUED, queue="default")
    JobFactory(status=JobStatus.RUNNING, queue="default")
    text = scrape(anonymous)
    assert sample(text, "conveyor_queue_jobs", queue="default") == 2
    assert sample(text, "conveyor_queue_jobs", queue="maintenance") == 0
    assert 110 <= sample(text, "conveyor_queue_oldest_job_age_seconds", queue="default") < 600
    assert sample(text, "conveyor_metrics_source_up", source="database") == 1
    assert sample(text, "conveyor_metrics_source_up", source="broker") == 1
