"""Admin for webhook deliveries: filter, inspect every attempt, redeliver (from the list, a
delivery's page, or every failed delivery matching the filter at once; needs
``webhooks.redeliver_webhookdelivery``, the "Conveyor operators" role). A job's page lists its
deliveries (``WebhookDeliveryInline``, added to the job admin from here: webhooks sit above
jobs)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse

from apps.clients.models import ApiClient
from apps.jobs.admin import JobAdmin, masked_input, with_zone
from apps.staff.admin_tools import StaffModelAdmin, note_outcome
from apps.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from apps.webhooks.services import deliveries_redeliver, delivery_redeliver

# A bulk redelivery sets at most this many failed deliveries pending, CHUNK per transaction.
BULK_REDELIVER_MAX = 100_000
CHUNK = 1000
_LIST_PARAMETERS = ("status__exact", "event_type__exact", "client_id__exact", "job", "q")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    verbose_name_plural = "Attempts (oldest first)"
    fields = ("shown_at", "status_code", "latency_ms", "outcome", "error", "response_excerpt")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="at")
    def shown_at(self, attempt: WebhookAttempt) -> str:
        return with_zone(attempt.at)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WebhookDeliveryInline(admin.TabularInline):
    """A job's deliveries on its page, each linking to its own page and attempts."""

    model = WebhookDelivery
    verbose_name_plural = "Webhook deliveries (each with its attempts on its own page)"
    fields = ("event_type", "status", "attempts", "last_status_code", "last_error", "created")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    @admin.display(description="created")
    def created(self, delivery: WebhookDelivery) -> str:
        return with_zone(delivery.created_at)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


JobAdmin.inlines = [*JobAdmin.inlines, WebhookDeliveryInline]


class JobFilter(admin.SimpleListFilter):
    """``?job=<id>``: one job's deliveries (the job page's link). Not offered as a choice."""

    title = "job"
    parameter_name = "job"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        import uuid

        value = self.value()
        if not value:
            return queryset
        try:
            return queryset.filter(job_id=uuid.UUID(value))
        except ValueError:
            return queryset.none()


class ClientFilter(admin.SimpleListFilter):
    """A delivery's API client by name (the row keeps the client's id, not a foreign key)."""

    title = "API client"
    parameter_name = "client_id__exact"
    SHOWN = 100

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = ApiClient.objects.order_by("name").values_list("pk", "name")[: self.SHOWN]
        return [(str(pk), name) for pk, name in rows]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        try:
            return queryset.filter(client_id=int(value))
        except ValueError:
            return queryset.none()


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(StaffModelAdmin):
    list_display = (
        "webhook_id",
        "event_type",
        "status",
        "client",
        "job",
        "attempts",
        "last_status_code",
        "created",
        "next_attempt",
    )
    list_filter = ("status", "event_type", ClientFilter, JobFilter)
    search_fields = ("=webhook_id", "=url")
    search_help_text = "A webhook-id or a receiver URL, exactly."
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]
    exclude = ("job_snapshot",)
    readonly_fields = [
        ("shown_job_snapshot" if f.name == "job_snapshot" else f.name)
        for f in WebhookDelivery._meta.fields
    ]
    raw_id_fields = ("job",)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The page's client names in one query (``client`` shows them)."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        names = dict(
            ApiClient.objects.filter(pk__in={d.client_id for d in rows}).values_list("pk", "name")
        )
        for delivery in rows:
            delivery.client_name = names.get(delivery.client_id)
        return changelist

    @admin.display(description="API client", ordering="client_id")
    def client(self, delivery: WebhookDelivery) -> str:
        name = getattr(delivery, "client_name", None)
        if name is None:
            name = ApiClient.objects.filter(pk=delivery.client_id).values_list("name", flat=True)
            name = next(iter(name), None)
        return name or f"#{delivery.client_id}"

    @admin.display(description="created", ordering="id")
    def created(self, delivery: WebhookDelivery) -> str:
        return with_zone(delivery.created_at)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, delivery: WebhookDelivery) -> str:
        return with_zone(delivery.next_attempt_at)

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

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.redeliver_webhookdelivery")

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        context.update(show_save=False, show_save_and_continue=False, show_delete=False)
        return super().render_change_form(request, context, *args, **kwargs)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        query = urlencode({k: request.GET[k] for k in _LIST_PARAMETERS if request.GET.get(k)})
        context = {
            **(extra_context or {}),
            "can_bulk_redeliver": self.has_redeliver_permission(request),
            "bulk_query": query,
            "empty_message": (
                "No delivery matches this filter. Clear a filter, or search by exact webhook-id."
                if query
                else "No webhook deliveries yet: they are made when a job with a webhook_url "
                "changes status (docs/webhooks in README.md)."
            ),
        }
        return super().changelist_view(request, context)

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

    # --- Every failed delivery matching the filter ---------------------------------------------
    def get_urls(self) -> list[Any]:
        return [
            path(
                "redeliver-failed/",
                self.admin_site.admin_view(self.redeliver_failed_view),
                name="webhooks_webhookdelivery_redeliver_failed",
            ),
            *super().get_urls(),
        ]

    def _failed_matching(self, request: HttpRequest, query: str) -> QuerySet[WebhookDelivery]:
        """The list's own queryset for ``query`` (its filters and search), failed ones only."""
        original = request.GET
        request.GET = QueryDict(query)
        try:
            changelist = self.get_changelist_instance(request)
            queryset = changelist.get_queryset(request)
        finally:
            request.GET = original
        return queryset.filter(status=DeliveryStatus.FAILED).order_by("pk")

    def redeliver_failed_view(self, request: HttpRequest) -> HttpResponse:
        source = request.POST if request.method == "POST" else request.GET
        query = urlencode({k: source[k] for k in _LIST_PARAMETERS if source.get(k)})
        if not (self.has_redeliver_permission(request) and self.has_view_permission(request)):
            self._audit(
                request,
                "bulk_redeliver",
                outcome=f"refused: the user may not run this action; filter: {query}",
                denied=True,
            )
            raise PermissionDenied
        failed = self._failed_matching(request, query)
        count = failed[:BULK_REDELIVER_MAX].count()
        list_url = reverse("admin:webhooks_webhookdelivery_changelist") + "?" + query
        if request.method == "POST":
            done, last = 0, 0
            while done < count:
                ids = list(failed.filter(pk__gt=last).values_list("pk", flat=True)[:CHUNK])
                if not ids:
                    break
                with transaction.atomic():
                    done += deliveries_redeliver(ids=ids[: count - done])
                last = ids[-1]
            self._audit(
                request,
                "bulk_redeliver",
                object_count=done,
                outcome=f"{done} failed deliveries queued again; filter: {query or '(none)'}",
            )
            self.message_user(request, f"{done} failed deliveries queued again.", messages.SUCCESS)
            return HttpResponseRedirect(list_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Redeliver every failed delivery matching the filter?",
            "count": count,
            "query_items": parse_qsl(query),
            "list_url": list_url,
        }
        return TemplateResponse(
            request, "admin/webhooks/webhookdelivery/redeliver_confirm.html", context
        )
