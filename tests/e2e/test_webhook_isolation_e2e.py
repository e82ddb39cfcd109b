"""One client's dribbling receivers do not stall another client's webhooks (issue #11).

A real webhook pool of 4 threads with a cap of 2 deliveries in flight per client; client A has
40 deliveries to a receiver that answers one byte every 0.5 s (so each of its attempts lasts the
whole WEBHOOK_TIMEOUT_SECONDS, 2 s here); client B's event to a healthy receiver must still
arrive within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from apps.webhooks.models import WebhookDelivery
from tests.support.processes import ManagedProcess, start_scheduler, start_worker, wait_for
from tests.support.receiver import DribblingReceiver, Receiver
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POOL_THREADS = 4
CAP = 2


@pytest.fixture
def pools(django_db_setup: None, django_db_blocker: Any, tmp_path: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        started: list[ManagedProcess] = [
            start_worker(tmp_path, name="jobs", queues="default", relay=False),
            start_worker(
                tmp_path,
                name="hooks",
                queues="webhooks",
                pool="threads",
                concurrency=POOL_THREADS,
                relay=False,
                WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT=str(CAP),
            ),
            start_scheduler(tmp_path),
        ]
    yield
    for process in started:
        process.stop()


@pytest.fixture
def dribbler() -> Iterator[DribblingReceiver]:
    server = DribblingReceiver(interval=0.5)
    yield server
    server.stop()


def in_flight(tenant: Tenant) -> int:
    return WebhookDelivery.objects.filter(
        client_id=tenant.client.pk, status="pending", leased_until__gt=timezone.now()
    ).count()


def test_a_healthy_clients_webhook_arrives_while_another_clients_receivers_dribble(
    pools: None,
    make_tenant: Any,
    dribbler: DribblingReceiver,
    receiver: Receiver,
) -> None:
    slow: Tenant = make_tenant()
    healthy: Tenant = make_tenant()
    jobs = [
        {"type": "diagnostics.echo", "input": {"message": f"a{i}"}, "webhook_url": dribbler.url}
        for i in range(40)
    ]
    assert slow.post("/api/v1/jobs/batch", {"jobs": jobs}).status_code == 202
    # A's 40 deliveries are written and its receivers are being dribbled at.
    wait_for(
        lambda: WebhookDelivery.objects.filter(client_id=slow.client.pk).count() == 40, timeout=60
    )
    wait_for(lambda: dribbler.connections >= CAP, timeout=30)
    connections_before = dribbler.connections

    submitted = time.monotonic()
    response = healthy.submit(webhook_url=receiver.url)
    assert response.status_code == 202
    peak = 0
    deadline = submitted + 60
    while not receiver.received and time.monotonic() < deadline:
        peak = max(peak, in_flight(slow))
        time.sleep(0.05)
    assert receiver.received, "the healthy client's webhook never arrived"
    took = receiver.received[0].at - submitted
    pending = WebhookDelivery.objects.filter(client_id=slow.client.pk, status="pending").count()
    print(
        f"\nhealthy client's webhook arrived {took:.2f} s after submission, while the other "
        f"client had {pending} pending deliveries to a dribbling receiver (pool {POOL_THREADS} "
        f"threads, cap {CAP}, peak in flight {peak})"
    )
    assert took < 15, took
    # A's deliveries kept going meanwhile, never more than its share of the pool at once, each
    # attempt ended by its deadline (2 s), not by the receiver.
    assert peak <= CAP
    wait_for(lambda: dribbler.connections > connections_before + CAP, timeout=20)
    assert max(dribbler.closed_after) < 2.0 + 3.0
