"""The audit log in the admin: readable by every staff role, writable by nobody. Users and
groups (who holds which role) are audited like every other model."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.http import HttpRequest

from apps.staff.admin_tools import StaffModelAdmin
from apps.staff.models import AdminAuditEntry


class TimeFilter(admin.DateFieldListFilter):
    """The entries' time (the field is called ``at``), under a title people say."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "time"


@admin.register(AdminAuditEntry)
class AdminAuditEntryAdmin(StaffModelAdmin):
    list_display = (
        "time",
        "username",
        "action",
        "model",
        "object_count",
        "denied",
        "outcome",
    )
    list_filter = ("denied", "action", "model", ("at", TimeFilter), "user")
    search_fields = ("=username", "=action", "=request_id")
    search_help_text = "A username, an action name or a request id."
    fields = (
        "time",
        "user",
        "username",
        "action",
        "model",
        "object_ids",
        "object_count",
        "denied",
        "outcome",
        "request_id",
    )
    readonly_fields = fields
    actions = None

    @admin.display(description="time", ordering="at")
    def time(self, entry: AdminAuditEntry) -> Any:
        return entry.at

    # Append-only, even for superusers: an audit log that its readers can edit proves nothing.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Giving a staff member a role is a write like any other: in the audit log too.
class AuditedUserAdmin(StaffModelAdmin, UserAdmin):
    pass


class AuditedGroupAdmin(StaffModelAdmin, GroupAdmin):
    pass


for _model, _admin in ((get_user_model(), AuditedUserAdmin), (Group, AuditedGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)
