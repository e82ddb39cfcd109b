"""No client can stall another's webhooks: the attempt deadline, the per-client cap in the claim,
inactive clients, exceptions recorded as attempts, and the lease fence (apps/webhooks/services.py,
transport.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.jobs import services
from apps.webhooks import transport
from apps.webhooks.maintenance import deliveries_wake_due
from apps.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from apps.webhooks.services import STALE, delivery_attempt, delivery_claim_next
from tests.support.receiver import DribblingReceiver, Receiver
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def dribbler() -> Iterator[DribblingReceiver]:
    server = DribblingReceiver(interval=0.5)
    yield server
    server.stop()


def finished_jobs(tenant: Tenant, url: str, count: int = 1) -> list[str]:
    """``count`` succeeded jobs of ``tenant`` announcing to ``url`` (one delivery each)."""
    ids = []
    for _ in range(count):
        response = tenant.submit(webhook_url=url)
        assert response.status_code == 202, response.content
        job = services.job_start(job_id=response.json()["id"])
        assert job is not None
        services.job_succeed(job=job, result={})
        ids.append(str(job.pk))
    return ids


def deliveries_of(tenant: Tenant) -> Any:
    return WebhookDelivery.objects.filter(client_id=tenant.client.pk)


def test_a_dribbling_receiver_cannot_stretch_an_attempt_past_its_deadline(
    tenant: Tenant, dribbler: DribblingReceiver, settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    finished_jobs(tenant, dribbler.url)
    delivery = delivery_claim_next()
    assert delivery is not None
    started = time.monotonic()
    assert delivery_attempt(delivery) == DeliveryStatus.PENDING
    took = time.monotonic() - started
    # A byte every 0.5 s would keep a per-read timeout of 2 s alive for ever.
    assert 1.5 <= took < 2.0 + 1.5, took
    attempt = WebhookAttempt.objects.get()
    assert (attempt.outcome, attempt.error, attempt.status_code) == ("retry", "timeout", None)
    assert attempt.latency_ms < 3500
    delivery.refresh_from_db()
    assert delivery.next_attempt_at > timezone.now()  # backoff
    assert (delivery.lease_token, delivery.leased_until) == (None, None)
    assert dribbler.connections == 1


def test_the_deadline_covers_the_dns_lookup(settings: Any, monkeypatch: Any) -> None:
    """A resolver that hangs counts against the attempt's deadline too."""
    from apps.core import urlguard

    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    monkeypatch.setattr(urlguard, "_getaddrinfo", lambda host: time.sleep(5) or ["93.184.215.14"])
    started = time.monotonic()
    answer = transport.post("https://slow-dns.example/hook", b"{}", {})
    assert time.monotonic() - started < 1.5
    assert (answer.status_code, answer.error) == (None, "timeout")


def test_headers_in_time_then_a_dribbled_body_still_counts_as_the_answer(
    tenant: Tenant, settings: Any
) -> None:
    """The deadline stops the body, not the answer that already came."""
    import socket
    import threading

    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        try:
            for _ in range(20):
                connection.sendall(b"x")
                time.sleep(0.25)
        except OSError:
            pass
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.monotonic()
    answer = transport.post(f"http://127.0.0.1:{server.getsockname()[1]}/hook", b"{}", {})
    assert time.monotonic() - started < 2.5
    assert answer.status_code == 200
    server.close()


def test_an_exception_in_the_transport_is_a_failed_attempt_retried_with_backoff(
    tenant: Tenant, receiver: Receiver, monkeypatch: Any
) -> None:
    finished_jobs(tenant, receiver.url)

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(transport, "post", explode)
    delivery = delivery_claim_next()
    assert delivery is not None
    assert delivery_attempt(delivery) == DeliveryStatus.PENDING
    attempt = WebhookAttempt.objects.get()
    assert attempt.outcome == "retry"
    assert attempt.error == "internal error: RuntimeError"  # no internals shown to the client
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at > timezone.now()
    assert delivery.last_error == "internal error: RuntimeError"
    assert delivery.lease_token is None
    assert delivery_claim_next() is None  # backing off, not re-claimed at once


def test_a_snapshot_that_fails_to_render_is_a_failed_attempt(
    tenant: Tenant, receiver: Receiver
) -> None:
    finished_jobs(tenant, receiver.url)
    WebhookDelivery.objects.update(job_snapshot={"created_at": "not a date"})
    delivery = delivery_claim_next()
    assert delivery is not None
    assert delivery_attempt(delivery) == DeliveryStatus.PENDING
    attempt = WebhookAttempt.objects.get()
    assert attempt.outcome == "retry"
    assert attempt.error.startswith("internal error: ")
    assert receiver.received == []
    assert WebhookDelivery.objects.get().attempts == 1


def test_an_attempt_that_lost_its_lease_writes_no_outcome(
    tenant: Tenant, receiver: Receiver, settings: Any
) -> None:
    finished_jobs(tenant, receiver.url)
    late = delivery_claim_next()
    assert late is not None
    # Its lease runs out (a worker hung past it) and another worker claims the delivery.
    later = timezone.now() + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + 21)
    current = delivery_claim_next(now=later)
    assert current is not None
    assert current.lease_token != late.lease_token
    receiver.answer(500)
    assert delivery_attempt(late) == STALE  # sent, but its outcome is not written
    assert not WebhookAttempt.objects.exists()
    assert WebhookDelivery.objects.get().lease_token == current.lease_token
    receiver.answer(200)
    assert delivery_attempt(current) == DeliveryStatus.DELIVERED
    assert list(WebhookAttempt.objects.values_list("outcome", flat=True)) == ["delivered"]
    assert len(receiver.received) == 2


def test_a_stale_attempt_does_not_mark_an_event_skipped(tenant: Tenant, receiver: Receiver) -> None:
    job = tenant.submit(webhook_url=receiver.url, webhook_events=["job.progress"]).json()
    running = services.job_start(job_id=job["id"])
    assert running is not None
    services.job_report_progress(job=running, percent=10)
    services.job_succeed(job=running, result={})
    WebhookDelivery.objects.update(event_type="job.progress")  # overtaken by a terminal one
    delivery = delivery_claim_next()
    assert delivery is not None
    WebhookDelivery.objects.update(lease_token=None)  # taken over
    assert delivery_attempt(delivery) == STALE
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING


def test_the_claim_caps_one_clients_deliveries_in_flight(
    tenant: Tenant, other_tenant: Tenant, receiver: Receiver, settings: Any
) -> None:
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT = 3
    finished_jobs(tenant, receiver.url, count=6)
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    finished_jobs(other_tenant, receiver.url, count=2)  # due later than all of tenant's
    claimed = [delivery_claim_next() for _ in range(6)]
    by_client = [d.client_id if d else None for d in claimed]
    assert by_client == [tenant.client.pk] * 3 + [other_tenant.client.pk] * 2 + [None]
    assert deliveries_of(tenant).filter(leased_until__gt=timezone.now()).count() == 3
    # One of tenant's attempts ends: one more of its deliveries may go.
    first = claimed[0]
    assert first is not None
    assert delivery_attempt(first) == DeliveryStatus.DELIVERED
    again = delivery_claim_next()
    assert again is not None
    assert again.client_id == tenant.client.pk
    assert delivery_claim_next() is None


def test_expired_leases_do_not_count_against_the_cap(
    tenant: Tenant, receiver: Receiver, settings: Any
) -> None:
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT = 1
    finished_jobs(tenant, receiver.url, count=2)
    assert delivery_claim_next() is not None
    assert delivery_claim_next() is None  # at the cap
    # The worker holding it died: once its lease runs out, the claim goes on.
    later = timezone.now() + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + 21)
    assert delivery_claim_next(now=later) is not None


def test_an_inactive_clients_deliveries_wait_and_resume_on_reactivation(
    tenant: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    finished_jobs(tenant, receiver.url, count=2)
    finished_jobs(other_tenant, receiver.url)
    ApiClient.objects.filter(pk=tenant.client.pk).update(is_active=False)
    claimed = delivery_claim_next()
    assert claimed is not None
    assert claimed.client_id == other_tenant.client.pk
    assert delivery_claim_next() is None
    assert delivery_attempt(claimed) == DeliveryStatus.DELIVERED
    assert deliveries_of(tenant).filter(status=DeliveryStatus.PENDING).count() == 2
    assert deliveries_of(tenant).filter(attempts=0).count() == 2
    assert len(receiver.received) == 1
    ApiClient.objects.filter(pk=tenant.client.pk).update(is_active=True)
    assert delivery_claim_next() is not None


def test_an_inactive_clients_due_deliveries_wake_no_worker(
    tenant: Tenant, receiver: Receiver
) -> None:
    finished_jobs(tenant, receiver.url)
    ApiClient.objects.filter(pk=tenant.client.pk).update(is_active=False)
    assert deliveries_wake_due() == 0
    ApiClient.objects.filter(pk=tenant.client.pk).update(is_active=True)
    assert deliveries_wake_due() >= 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_claims_keep_to_the_cap(
    tenant: Tenant, other_tenant: Tenant, receiver: Receiver, settings: Any
) -> None:
    """Eight workers claiming in the same instant (each on its own connection): one client's
    deliveries in flight stay at the cap, and the other client's delivery is claimed."""
    import threading

    from django.db import connection

    settings.WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT = 2
    finished_jobs(tenant, receiver.url, count=12)
    finished_jobs(other_tenant, receiver.url)
    for _ in range(5):
        WebhookDelivery.objects.update(
            lease_token=None,
            leased_until=None,
            next_attempt_at=timezone.now() - timedelta(minutes=1),
        )
        start = threading.Barrier(8)
        claimed: list[int | None] = []

        def claim(start: threading.Barrier = start, claimed: list[int | None] = claimed) -> None:
            try:
                start.wait()
                delivery = delivery_claim_next()
                claimed.append(delivery.client_id if delivery else None)
            finally:
                connection.close()

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert claimed.count(tenant.client.pk) == 2, claimed
        assert claimed.count(other_tenant.client.pk) == 1, claimed
