"""Admin for webhook deliveries: filter, inspect every attempt, redeliver (from the list or a
delivery's page; needs ``webhooks.redeliver_webhookdelivery``, the "Conveyor operators" role)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.jobs.admin import masked_input
from apps.staff.admin_tools import StaffModelAdmin, note_outcome
from apps.webhooks.models import WebhookAttempt, WebhookDelivery
from apps.webhooks.services import delivery_redeliver


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ("at", "status_code", "latency_ms", "outcome", "error", "response_excerpt")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(StaffModelAdmin):
    list_display = (
        "webhook_id",
        "event_type",
        "status",
        "client_id",
        "job",
        "attempts",
        "last_status_code",
        "created_at",
        "next_attempt_at",
    )
    list_filter = ("status", "event_type", "client_id")
    search_fields = ("=webhook_id", "=url")
    show_full_result_count = False
    ordering = ("-id",)
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]
    exclude = ("job_snapshot",)
    readonly_fields = [
        ("shown_job_snapshot" if f.name == "job_snapshot" else f.name)
        for f in WebhookDelivery._meta.fields
    ]
    raw_id_fields = ("job",)

    @admin.display(description="job snapshot")
    def shown_job_snapshot(self, delivery: WebhookDelivery) -> str:
        """The snapshot with the job's sensitive input fields filtered (apps/jobs/admin.py)."""
        snapshot = dict(delivery.job_snapshot or {})
        if "input" in snapshot:
            snapshot["input"] = masked_input(snapshot.get("type", ""), snapshot["input"])
        return json.dumps(snapshot, ensure_ascii=False, indent=1)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.method in {"GET", "HEAD"} and super().has_change_permission(request, obj)

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.redeliver_webhookdelivery")

    @admin.action(
        description="Redeliver the selected deliveries now (same webhook-id)",
        permissions=["redeliver"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = 0
        for delivery in queryset[:1000]:
            delivery_redeliver(delivery=delivery)
            count += 1
        self.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)
        note_outcome(request, f"{count} queued again")
