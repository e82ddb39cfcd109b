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
