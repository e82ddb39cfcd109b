"""Reads of webhook deliveries."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from apps.jobs.representation import rfc3339
from apps.webhooks.models import WebhookAttempt, WebhookDelivery


def deliveries_for_job(*, job_id: Any) -> list[WebhookDelivery]:
    """A job's deliveries, oldest first, with their attempts (two queries, whatever the count)."""
    return list(
        WebhookDelivery.objects.filter(job_id=job_id)
        .order_by("sequence", "id")
        .prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("id")))
    )


def delivery_to_dict(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "webhook_id": delivery.webhook_id,
        "event_type": delivery.event_type,
        "sequence": delivery.sequence,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": [
            {
                "at": rfc3339(attempt.at),
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "outcome": attempt.outcome,
                "error": attempt.error or None,
                "response_excerpt": attempt.response_excerpt,
            }
            for attempt in delivery.attempt_log.all()
        ],
        "next_attempt_at": rfc3339(delivery.next_attempt_at)
        if delivery.status == "pending"
        else None,
        "created_at": rfc3339(delivery.created_at),
        "delivered_at": rfc3339(delivery.delivered_at),
    }


# The dashboard counts failing deliveries up to this many: enough to say "many".
FAILING_COUNT_CAP = 1000


def deliveries_failing(*, since: Any) -> dict[str, int]:
    """Deliveries in trouble, each count capped at ``FAILING_COUNT_CAP``: ``retrying`` (pending
    after at least one failed attempt; the ``delivery_due`` index's rows) and ``failed`` (gave up
    after the whole retry window, created since ``since``; the ``delivery_status_id`` index)."""
    retrying = WebhookDelivery.objects.filter(status="pending", attempts__gte=1).values("pk")
    failed = WebhookDelivery.objects.filter(status="failed", created_at__gte=since).values("pk")
    return {
        "retrying": retrying[:FAILING_COUNT_CAP].count(),
        "failed": failed[:FAILING_COUNT_CAP].count(),
    }
