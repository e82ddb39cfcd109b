"""Waking the webhook pool when deliveries fall due (retries) or were never announced."""

from __future__ import annotations

from apps.jobs.broker import queue_depths
from apps.jobs.dispatch import publish_wakeups, wakeups_for
from apps.jobs.queues import WEBHOOKS_QUEUE
from apps.webhooks.models import DeliveryStatus, WebhookDelivery


def deliveries_wake_due(*, limit: int = 1000) -> int:
    """Publish wake-ups when deliveries are due and the broker holds none for the pool.

    Covers retries coming due, a relay that was down when a delivery was written, and lost
    messages; while the pool is busy draining, its own hand-over wake-ups keep it going.
    """
    from django.utils import timezone

    from apps.clients.models import ApiClient

    # Inactive clients' deliveries wait (the claim skips them): they wake nobody.
    due = (
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
        )
        .exclude(client_id__in=ApiClient.objects.filter(is_active=False).values("pk"))
        .values("pk")[:limit]
        .count()
    )
    if not due or queue_depths([WEBHOOKS_QUEUE]).get(WEBHOOKS_QUEUE) != 0:
        return 0
    return publish_wakeups({WEBHOOKS_QUEUE: wakeups_for(due)})
