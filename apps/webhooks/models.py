"""Webhook deliveries (the outbox) and every attempt to deliver them.

A delivery row is written by the same statement as the job change it announces (the job store
adds apps/webhooks/outbox.py's part to it), so no subscribed change goes without one. Webhook
workers drain due deliveries from this table (apps/webhooks/services.py); the broker only wakes
them.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.jobs.models import Job


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    DELIVERED = "delivered"  # a 2xx answer
    GONE = "gone"  # the receiver answered 410: stop sending this event
    FAILED = "failed"  # retried for the whole window without a 2xx
    SKIPPED = "skipped"  # a progress event overtaken by the job's terminal event


class WebhookDelivery(models.Model):
    job = models.ForeignKey(Job, on_delete=models.DB_CASCADE, related_name="deliveries")
    client_id = models.BigIntegerField(db_index=True)
    event_type = models.CharField(max_length=32)
    sequence = models.PositiveIntegerField(
        help_text="The job's version at the event: per job, increasing."
    )
    webhook_id = models.CharField(max_length=64, unique=True, help_text="Stable across retries.")
    url = models.URLField(max_length=2048)
    job_snapshot = models.JSONField(help_text="The job row as the event left it.")
    request_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # The lease of the attempt in flight (services.delivery_claim_next): a fresh token per claim,
    # and its expiry. Only the attempt holding the token writes the outcome; unexpired leases are
    # the client's deliveries in flight, which the claim caps per client.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    leased_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Webhook workers claim the next due delivery.
            models.Index(
                fields=["next_attempt_at"], name="delivery_due", condition=Q(status="pending")
            ),
            # ... skipping clients with WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT unexpired leases.
            models.Index(
                fields=["leased_until", "client_id"],
                name="delivery_in_flight",
                condition=Q(status="pending", leased_until__isnull=False),
            ),
            models.Index(fields=["job", "sequence"], name="delivery_job_sequence"),
            models.Index(fields=["status", "-id"], name="delivery_status_id"),
        ]
        verbose_name_plural = "webhook deliveries"
        # Staff roles (apps/staff): what the admin's redeliver action needs.
        permissions = [("redeliver_webhookdelivery", "Can redeliver webhooks")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.webhook_id} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.DB_CASCADE, related_name="attempt_log", db_index=False
    )
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField()
    outcome = models.CharField(max_length=16, help_text="delivered, retry, gone or failed.")
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["delivery", "id"], name="attempt_delivery_id")]

    def __str__(self) -> str:
        return f"{self.delivery_id} @ {self.at}: {self.outcome}"
