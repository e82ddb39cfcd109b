"""Admin for API clients and keys. A new key is shown once, in the confirmation message."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.clients.models import ApiClient, ApiKey
from apps.clients.services import api_key_create, api_key_revoke, webhook_secret_rotate
from apps.core.admin_tools import ReplicaListMixin


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiClient)
class ApiClientAdmin(ReplicaListMixin, admin.ModelAdmin):
    list_display = ("name", "is_active", "unlimited", "max_active_jobs", "created_at")
    list_filter = ("is_active", "unlimited")
    search_fields = ("name",)
    fields = (
        "name",
        "is_active",
        "unlimited",
        "max_active_jobs",
        "rate_limit_submit",
        "rate_limit_read",
        "rate_limit_list",
        "created_at",
    )
    readonly_fields = ("created_at",)
    inlines = [ApiKeyInline]
    actions = ["create_api_key", "rotate_webhook_secret"]

    def has_delete_permission(self, request: HttpRequest, obj: ApiClient | None = None) -> bool:
        # A client with jobs is deactivated instead: deleting it would orphan its jobs.
        if obj is not None and obj.jobs.exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            _, plain = api_key_create(client=obj, name="initial")
            self.message_user(
                request,
                f"Client {obj.name} created. API key (shown once, copy it now): {plain} — "
                f"webhook secret: {obj.webhook_secret}",
                messages.SUCCESS,
            )

    @admin.action(description="Rotate the webhook secret (new one shown once; old one signs 24 h)")
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            secret = webhook_secret_rotate(client=client)
            self.message_user(
                request,
                f"New webhook secret for {client.name} (shown once, copy it now): {secret}. "
                "Webhooks are signed with both secrets for the next 24 hours.",
                messages.SUCCESS,
            )

    @admin.action(description="Create a new API key (shown once)")
    def create_api_key(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            _, plain = api_key_create(client=client, name=f"admin:{request.user}")
            self.message_user(
                request,
                f"New API key for {client.name} (shown once, copy it now): {plain}",
                messages.SUCCESS,
            )


@admin.register(ApiKey)
class ApiKeyAdmin(ReplicaListMixin, admin.ModelAdmin):
    list_display = ("prefix", "client", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("client",)
    search_fields = ("prefix", "client__name")
    fields = ("client", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.", messages.SUCCESS)
