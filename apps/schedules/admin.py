"""Admin for schedules. Staff roles (apps/staff/roles.py): viewers see them; operators also run
them now and enable or disable them (the actions, like a job's retry or cancel: operating what
exists); admins also create, edit and delete them (what runs on a client's behalf, like its
limits). Edits are checked by the API's own validation and saved through the services, so a
schedule edited here fires exactly as one made over the API."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import ActionLocation
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.core.errors import ValidationFailed
from apps.schedules import services
from apps.schedules.models import Schedule
from apps.staff.admin_tools import StaffModelAdmin

EDITABLE = ("client", "name", "cron", "timezone", "job", "enabled", "overlap")


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = EDITABLE

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        data = {name: cleaned[name] for name in services.FIELDS if name in cleaned}
        try:
            services.parse_schedule(data, partial=False, now=timezone.now())
        except ValidationFailed as exc:
            for path, problems in exc.details.items():
                field = path.split(".", 1)[0]
                for problem in problems:
                    message = problem if field == path else f"{path}: {problem}"
                    self.add_error(field if field in self.fields else None, message)
        return cleaned


@admin.register(Schedule)
class ScheduleAdmin(StaffModelAdmin):
    form = ScheduleForm
    list_display = (
        "name",
        "client",
        "cron",
        "timezone",
        "enabled",
        "overlap",
        "next_run_at",
        "last_run_at",
        "last_job",
        "last_skip_reason",
    )
    list_filter = ("enabled", "overlap")
    list_select_related = ("client",)
    search_fields = ("name", "client__name")
    search_help_text = "A schedule's name or its client's."
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    actions = ["trigger_selected", "enable_selected", "disable_selected"]
    readonly_fields = (
        "id",
        "next_run_at",
        "last_run_at",
        "last_job",
        "jobs",
        "last_skipped_at",
        "last_skip_reason",
        "created_at",
        "updated_at",
    )
    raw_id_fields = ("client",)

    @admin.display(description="last job")
    def last_job(self, schedule: Schedule) -> str:
        if schedule.last_job_id is None:
            return "-"
        url = reverse("admin:jobs_job_change", args=[schedule.last_job_id])
        return format_html('<a href="{}">{}</a>', url, schedule.last_job_id)

    @admin.display(description="jobs")
    def jobs(self, schedule: Schedule) -> str:
        if schedule.pk is None:
            return "-"
        url = reverse("admin:jobs_job_changelist") + f"?schedule_id={schedule.pk}"
        return format_html('<a href="{}">The jobs it fired</a>', url)

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        services.schedule_store(obj, changed=list(form.changed_data))

    def has_trigger_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("schedules.trigger_schedule")

    def has_toggle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("schedules.toggle_schedule")

    @admin.action(
        description="Run the selected schedules now",
        permissions=["trigger"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def trigger_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self.apply_each(
            request,
            queryset.select_related("client"),
            lambda s: services.schedule_trigger(schedule=s, client=s.client),
            "run",
            label=str,
        )

    @admin.action(
        description="Enable the selected schedules",
        permissions=["toggle"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self.apply_each(
            request,
            queryset,
            lambda s: services.schedule_set_enabled(schedule=s, enabled=True),
            "enabled",
            label=str,
        )

    @admin.action(
        description="Disable the selected schedules",
        permissions=["toggle"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self.apply_each(
            request,
            queryset,
            lambda s: services.schedule_set_enabled(schedule=s, enabled=False),
            "disabled",
            label=str,
        )
