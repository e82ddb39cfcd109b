"""Admin for API clients and keys. A new key or webhook secret is shown once, in the confirmation
message, to the staff member who created it; no page shows a secret or a key's hash.

Roles (apps/staff): viewers and operators see clients and keys; "Conveyor admins" create
clients and keys, revoke keys, rotate webhook secrets and change limits. Deleting a client is
left to superusers, and refused for a client with jobs (deactivate it instead).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.clients.models import ApiClient, ApiKey
from apps.clients.services import api_key_create, api_key_revoke, webhook_secret_rotate
from apps.core.admin_tools import ReplicaListMixin
from apps.staff.admin_tools import StaffModelAdmin, note_outcome

# Actions on one client are offered on its page too.
_LIST_AND_FORM = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApiClientForm(forms.ModelForm):
    # Left empty, the weight is the default 1 (a form that predates weights still saves).
    weight = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        help_text=ApiClient._meta.get_field("weight").help_text,
    )

    class Meta:
        model = ApiClient
        fields = ("weight",)  # the admin's own ``fields`` decide the form's

    def clean_weight(self) -> int:
        return self.cleaned_data.get("weight") or 1


@admin.register(ApiClient)
class ApiClientAdmin(ReplicaListMixin, StaffModelAdmin):
    form = ApiClientForm
    list_display = (
        "name",
        "is_active",
        "unlimited",
        "max_active_jobs",
        "max_running_jobs",
        "weight",
        "created_at",
    )
    list_filter = ("is_active", "unlimited")
    search_fields = ("name",)
    fields = (
        "name",
        "is_active",
        "unlimited",
        "max_active_jobs",
        "max_running_jobs",
        "weight",
        "rate_limit_submit",
        "rate_limit_read",
        "rate_limit_list",
        "created_at",
    )
    readonly_fields = ("created_at",)
    inlines = [ApiKeyInline]
    actions = ["create_api_key", "rotate_webhook_secret", "delete_selected"]

    def has_delete_permission(self, request: HttpRequest, obj: ApiClient | None = None) -> bool:
        # A client with jobs is deactivated instead: deleting it would orphan its jobs.
        if obj is not None and obj.jobs.exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            key, plain = api_key_create(client=obj, name="initial")
            note_outcome(request, f"created with API key id {key.pk}")
            self.message_user(
                request,
                f"Client {obj.name} created. API key (shown once, copy it now): {plain} — "
                f"webhook secret: {obj.webhook_secret}",
                messages.SUCCESS,
            )

    def has_rotate_webhook_secret_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("clients.rotate_webhook_secret")

    def has_create_api_key_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("clients.add_apikey")

    @admin.action(
        description="Rotate the webhook secret (new one shown once; old one signs 24 h)",
        permissions=["rotate_webhook_secret"],
        location=_LIST_AND_FORM,
    )
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        rotated = 0
        for client in queryset:
            secret = webhook_secret_rotate(client=client)
            rotated += 1
            self.message_user(
                request,
                f"New webhook secret for {client.name} (shown once, copy it now): {secret}. "
                "Webhooks are signed with both secrets for the next 24 hours.",
                messages.SUCCESS,
            )
        note_outcome(request, f"{rotated} webhook secret(s) rotated")

    @admin.action(
        description="Create a new API key (shown once)",
        permissions=["create_api_key"],
        location=_LIST_AND_FORM,
    )
    def create_api_key(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        created = []
        for client in queryset:
            key, plain = api_key_create(client=client, name=f"admin:{request.user}")
            created.append(str(key.pk))
            self.message_user(
                request,
                f"New API key for {client.name} (shown once, copy it now): {plain}",
                messages.SUCCESS,
            )
        note_outcome(request, f"API key id(s) {', '.join(created)} created")

    @admin.action(description="Delete selected API clients", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> Any:
        """Django's bulk delete, refused with a message when a selected client has jobs (their
        rows would be orphaned; deactivate the client instead)."""
        try:
            # Atomic, so that a refusal in delete_queryset also drops the history entries
            # Django writes just before it.
            with transaction.atomic():
                if with_jobs := _names_with_jobs(queryset):
                    raise ClientsHaveJobs(with_jobs)
                return django_delete_selected(self, request, queryset)
        except ClientsHaveJobs as refused:
            self.message_user(
                request,
                "Nothing was deleted: clients with jobs cannot be deleted, deactivate them "
                f"instead (untick Active): {', '.join(refused.names[:20])}.",
                messages.ERROR,
            )
            note_outcome(request, f"refused: {len(refused.names)} selected client(s) have jobs")
            return None

    # A job may arrive between the check above (or the page's) and the deletion: the client
    # rows are locked first (a submission's foreign-key check then waits for the deletion and
    # fails) and checked again, so no job is ever left without its client.
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        with transaction.atomic():
            pks = list(queryset.select_for_update().values_list("pk", flat=True))
            if with_jobs := _names_with_jobs(ApiClient.objects.filter(pk__in=pks)):
                raise ClientsHaveJobs(with_jobs)
            super().delete_queryset(request, queryset)

    def delete_model(self, request: HttpRequest, obj: ApiClient) -> None:
        with transaction.atomic():
            list(ApiClient.objects.select_for_update().filter(pk=obj.pk).values_list("pk"))
            if obj.jobs.exists():
                raise PermissionDenied
            super().delete_model(request, obj)


class ClientsHaveJobs(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.names = names


def _names_with_jobs(queryset: QuerySet[ApiClient]) -> list[str]:
    return sorted(queryset.filter(jobs__isnull=False).distinct().values_list("name", flat=True))


@admin.register(ApiKey)
class ApiKeyAdmin(ReplicaListMixin, StaffModelAdmin):
    list_display = ("prefix", "client", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("client",)
    search_fields = ("prefix", "client__name")
    fields = ("client", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("clients.revoke_apikey")

    @admin.action(
        description="Revoke the selected keys", permissions=["revoke"], location=_LIST_AND_FORM
    )
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset:
            api_key_revoke(key=key)
            revoked += 1
        self.message_user(request, f"{revoked} key(s) revoked.", messages.SUCCESS)
        note_outcome(request, f"{revoked} key(s) revoked")
