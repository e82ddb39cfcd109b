"""Webhook outbox, signing and delivery against a real receiver on loopback.

Signatures are verified with the standardwebhooks library, not with Conveyor's own code.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from apps.clients.models import ApiClient
from apps.clients.services import webhook_secret_rotate
from apps.jobs import services
from apps.jobs.models import Job
from apps.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from apps.webhooks.services import delivery_attempt, delivery_claim_next, delivery_redeliver
from tests.support.errors import assert_error
from tests.support.receiver import Receiver
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def submit(tenant: Tenant, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    response = tenant.submit(webhook_url=receiver.url, **fields)
    assert response.status_code == 202, response.content
    return response.json()


def run_to_success(job_id: str) -> Job:
    job = services.job_start(job_id=job_id)
    assert job is not None
    done = services.job_succeed(job=job, result={"ok": True})
    assert done is not None
    return done


def deliver_due() -> list[str]:
    outcomes = []
    while (delivery := delivery_claim_next()) is not None:
        outcomes.append(delivery_attempt(delivery))
    return outcomes


def make_due() -> None:
    WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).update(
        next_attempt_at=timezone.now()
    )


def test_a_terminal_event_is_delivered_signed(tenant: Tenant, receiver: Receiver) -> None:
    job = submit(tenant, receiver)
    run_to_success(job["id"])
    assert deliver_due() == ["delivered"]
    [request] = receiver.received
    headers = {k.lower(): v for k, v in request.headers.items()}
    payload = Webhook(tenant.client.webhook_secret).verify(request.body, headers)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["status"] == "succeeded"
    assert payload["data"]["result"] == {"ok": True}
    assert headers["webhook-id"].startswith("msg_")
    assert headers["x-request-id"] == Job.objects.get(pk=job["id"]).request_id
    assert headers["content-type"] == "application/json"


def test_the_outbox_row_is_written_with_the_transition(tenant: Tenant, receiver: Receiver) -> None:
    job = submit(tenant, receiver)
    assert not WebhookDelivery.objects.exists()  # job.started is not subscribed by default
    run_to_success(job["id"])
    delivery = WebhookDelivery.objects.get()
    assert (delivery.event_type, delivery.status) == ("job.succeeded", "pending")
    assert delivery.sequence == Job.objects.get(pk=job["id"]).version


def test_jobs_without_a_webhook_write_no_delivery(tenant: Tenant) -> None:
    run_to_success(tenant.submit().json()["id"])
    assert not WebhookDelivery.objects.exists()


def test_subscribed_events_only(tenant: Tenant, receiver: Receiver) -> None:
    job = submit(tenant, receiver, webhook_events=["job.started"])
    run_to_success(job["id"])
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["job.started"]


def test_a_cancel_is_announced(tenant: Tenant, receiver: Receiver) -> None:
    job = submit(tenant, receiver)
    tenant.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["job.canceled"]


def test_500_twice_then_200_is_delivered_on_the_third_attempt_with_one_id(
    tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answer(500, 500, 200)
    run_to_success(submit(tenant, receiver)["id"])
    assert deliver_due() == ["pending"]
    make_due()
    assert deliver_due() == ["pending"]
    make_due()
    assert deliver_due() == ["delivered"]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    outcomes = list(WebhookAttempt.objects.order_by("id").values_list("outcome", "status_code"))
    assert outcomes == [("retry", 500), ("retry", 500), ("delivered", 200)]
    assert all(a.latency_ms >= 0 for a in WebhookAttempt.objects.all())
    assert len(WebhookAttempt.objects.first().response_excerpt) <= 1024


def test_backoff_grows_between_retries(tenant: Tenant, receiver: Receiver) -> None:
    receiver.answer(503)
    run_to_success(submit(tenant, receiver)["id"])
    gaps = []
    for _ in range(4):
        before = timezone.now()
        deliver_due()
        gaps.append((WebhookDelivery.objects.get().next_attempt_at - before).total_seconds())
        make_due()
    base = 0.2  # WEBHOOK_RETRY_BASE_SECONDS in tests/settings.py
    for attempt, gap in enumerate(gaps, start=1):
        ceiling = base * 2 ** (attempt - 1)
        assert ceiling / 2 - 0.05 <= gap <= ceiling + 0.05  # equal jitter


def test_retry_after_is_honoured(tenant: Tenant, receiver: Receiver) -> None:
    receiver.answer((429, 0.0, {"Retry-After": "30"}))
    run_to_success(submit(tenant, receiver)["id"])
    deliver_due()
    delivery = WebhookDelivery.objects.get()
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=29)


def test_410_stops_retrying(tenant: Tenant, receiver: Receiver) -> None:
    receiver.answer(410)
    run_to_success(submit(tenant, receiver)["id"])
    assert deliver_due() == ["gone"]
    make_due()
    assert deliver_due() == []
    assert len(receiver.received) == 1


def test_a_redirect_is_not_followed(tenant: Tenant, receiver: Receiver) -> None:
    receiver.answer((302, 0.0, {"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"}))
    run_to_success(submit(tenant, receiver)["id"])
    assert deliver_due() == ["pending"]
    assert [r.path for r in receiver.received] == ["/hook"]
    assert WebhookDelivery.objects.get().last_status_code == 302


def test_a_slow_receiver_times_out(tenant: Tenant, receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.answer((200, 1.5))
    run_to_success(submit(tenant, receiver)["id"])
    assert deliver_due() == ["pending"]
    attempt = WebhookAttempt.objects.get()
    assert (attempt.outcome, attempt.error, attempt.status_code) == ("retry", "timeout", None)


def test_a_receiver_that_is_down_is_retried_then_failed_nothing_lost(
    tenant: Tenant, settings: Any
) -> None:
    from tests.support.processes import free_port

    settings.WEBHOOK_RETRY_HOURS = 2 / 3600  # a two-second window
    tenant_job = tenant.submit(webhook_url=f"http://127.0.0.1:{free_port()}/hook").json()
    run_to_success(tenant_job["id"])
    deadline = time.monotonic() + 10
    while WebhookDelivery.objects.get().status == "pending" and time.monotonic() < deadline:
        make_due()
        deliver_due()
        time.sleep(0.2)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.attempts >= 2
    assert all(a.error for a in WebhookAttempt.objects.all())


def test_a_private_address_is_refused_at_submission(tenant: Tenant, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/hook",
    ]:
        error = assert_error(tenant.submit(webhook_url=url), 400, "validation_error")
        assert "webhook_url" in error["details"]


def test_https_is_required_in_production_settings(tenant: Tenant, settings: Any) -> None:
    settings.WEBHOOK_REQUIRE_HTTPS = True
    error = assert_error(
        tenant.submit(webhook_url="http://example.com/hook"), 400, "validation_error"
    )
    assert error["details"]["webhook_url"] == ["Must be an https URL."]


def test_a_url_that_turned_private_is_refused_at_delivery(
    tenant: Tenant, receiver: Receiver, settings: Any
) -> None:
    run_to_success(submit(tenant, receiver)["id"])
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False  # as if its DNS now pointed inside
    assert deliver_due() == ["pending"]
    assert receiver.received == []
    assert WebhookAttempt.objects.get().error.startswith("refused")


def test_during_a_rotation_both_secrets_sign(tenant: Tenant, receiver: Receiver) -> None:
    old_secret = tenant.client.webhook_secret
    client = ApiClient.objects.get(pk=tenant.client.pk)
    new_secret = webhook_secret_rotate(client=client)
    run_to_success(submit(tenant, receiver)["id"])
    deliver_due()
    [request] = receiver.received
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert len(headers["webhook-signature"].split()) == 2
    assert Webhook(new_secret).verify(request.body, headers)
    assert Webhook(old_secret).verify(request.body, headers)


def test_after_the_rotation_window_only_the_new_secret_signs(
    tenant: Tenant, receiver: Receiver
) -> None:
    client = ApiClient.objects.get(pk=tenant.client.pk)
    new_secret = webhook_secret_rotate(client=client)
    ApiClient.objects.filter(pk=client.pk).update(
        previous_webhook_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    run_to_success(submit(tenant, receiver)["id"])
    deliver_due()
    headers = {k.lower(): v for k, v in receiver.received[0].headers.items()}
    assert len(headers["webhook-signature"].split()) == 1
    assert Webhook(new_secret).verify(receiver.received[0].body, headers)


def test_progress_is_throttled_and_never_sent_after_the_terminal_event(
    tenant: Tenant, receiver: Receiver
) -> None:
    job = submit(tenant, receiver, webhook_events=["job.progress", "job.succeeded"])
    running = services.job_start(job_id=job["id"])
    assert running is not None
    for percent in (10, 20, 30):
        services.job_report_progress(job=running, percent=percent)
    assert WebhookDelivery.objects.filter(event_type="job.progress").count() == 1
    services.job_succeed(job=running, result={})
    # The terminal event is delivered first (it is due as soon as the progress one) ...
    WebhookDelivery.objects.filter(event_type="job.succeeded").update(
        next_attempt_at=timezone.now() - timedelta(seconds=5)
    )
    assert deliver_due() == ["delivered", "skipped"]
    types = [orjson.loads(r.body)["type"] for r in receiver.received]
    assert types == ["job.succeeded"]  # ... and the stale progress never follows it


def test_redeliver_sends_again_with_the_same_webhook_id(tenant: Tenant, receiver: Receiver) -> None:
    run_to_success(submit(tenant, receiver)["id"])
    deliver_due()
    delivery_redeliver(delivery=WebhookDelivery.objects.get())
    assert deliver_due() == ["delivered"]
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]


def test_deliveries_endpoint_lists_attempts_for_the_owner_only(
    tenant: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answer(500, 200)
    job = submit(tenant, receiver)
    run_to_success(job["id"])
    deliver_due()
    make_due()
    deliver_due()
    response = tenant.get(f"/api/v1/jobs/{job['id']}/deliveries")
    assert response.status_code == 200
    [delivery] = response.json()["results"]
    assert delivery["event_type"] == "job.succeeded"
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert_error(other_tenant.get(f"/api/v1/jobs/{job['id']}/deliveries"), 404, "not_found")


def test_delivery_outcomes_and_latency_are_counted(tenant: Tenant, receiver: Receiver) -> None:
    from apps.core.metrics import webhook_deliveries_total, webhook_delivery_seconds

    def sample(metric: Any, suffix: str, labels: dict[str, str]) -> float:
        for family in metric.collect():
            for s in family.samples:
                if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    delivered_before = sample(webhook_deliveries_total, "_total", {"outcome": "delivered"})
    retries_before = sample(webhook_deliveries_total, "_total", {"outcome": "retry"})
    count_before = sample(webhook_delivery_seconds, "_count", {})
    receiver.answer(500, 200)
    run_to_success(submit(tenant, receiver)["id"])
    deliver_due()
    make_due()
    deliver_due()
    assert sample(webhook_deliveries_total, "_total", {"outcome": "retry"}) == retries_before + 1
    assert (
        sample(webhook_deliveries_total, "_total", {"outcome": "delivered"}) == delivered_before + 1
    )
    assert sample(webhook_delivery_seconds, "_count", {}) == count_before + 2
