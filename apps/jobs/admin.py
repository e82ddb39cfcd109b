"""Admin for jobs: find (filters, search by id / idempotency key / client), inspect (events
inline), retry and cancel (through the same services the API uses), from the list or from a
job's page. Viewing needs ``jobs.view_job``; the actions ``jobs.retry_job`` and
``jobs.cancel_job`` (the "Conveyor operators" role, apps/staff).

The list page stays fast on a million jobs: it may read a replica, never counts the table in
full (apps/core/admin_tools.py), and its type and queue filters offer the registered job types
and queues instead of asking the table for its distinct values (a full scan per page view).

No staff member sees the input fields a job type marks sensitive (``sensitive_input_fields``):
the job's page, and a webhook delivery's snapshot of it, show them as ``[Filtered]``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin import ActionLocation
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from apps.core.admin_tools import EstimatedCountPaginator, ReplicaListMixin
from apps.core.logs import FILTERED
from apps.jobs import services
from apps.jobs.models import Job, JobEvent
from apps.jobs.registry import all_job_types, get_job_type, queues
from apps.jobs.representation import wait_reason
from apps.jobs.selectors import job_dependents
from apps.staff.admin_tools import StaffModelAdmin


def masked_input(type_name: str, data: Any) -> Any:
    """A job's input as the admin shows it: the fields its type marks sensitive are replaced by
    ``[Filtered]``, as in logs and Sentry events."""
    job_type = get_job_type(type_name)
    if job_type is not None and isinstance(data, dict) and job_type.sensitive_input_fields:
        sensitive = job_type.sensitive_input_fields
        data = {name: FILTERED if name in sensitive else value for name, value in data.items()}
    return data


DEPENDENTS_SHOWN = 100


def _job_links(ids: Any) -> str:
    if not ids:
        return "-"
    return format_html_join(
        ", ",
        '<a href="{}">{}</a>',
        ((reverse("admin:jobs_job_change", args=[pk]), pk) for pk in ids),
    )


class _RegistryFilter(admin.SimpleListFilter):
    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class JobTypeFilter(_RegistryFilter):
    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(jt.name, jt.name) for jt in all_job_types()]


class QueueFilter(_RegistryFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in queues()]


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ("at", "from_status", "to_status", "attempt", "details")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReplicaListMixin, StaffModelAdmin):
    list_display = (
        "id",
        "type",
        "status",
        "client",
        "queue",
        "priority",
        "attempts",
        "wait_reason",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", JobTypeFilter, QueueFilter, "priority")
    list_select_related = ("client",)
    paginator = EstimatedCountPaginator
    search_fields = ("idempotency_key", "client__name")
    search_help_text = "A job id, an idempotency key, or a client name."
    show_full_result_count = False
    # Facet counts are one COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    inlines = [JobEventInline]
    actions = ["retry_selected", "cancel_selected"]
    exclude = ("input",)
    readonly_fields = [
        *(
            {"input": "shown_input", "depends_on": "dependencies"}.get(f.name, f.name)
            for f in Job._meta.fields
        ),
        "dependents",
        "wait_reason",
        "schedule",
    ]

    @admin.display(description="depends on")
    def dependencies(self, job: Job) -> str:
        """The jobs it waits for (workflows), as links."""
        return _job_links(job.depends_on)

    @admin.display(description="dependents")
    def dependents(self, job: Job) -> str:
        """The jobs that wait for it (the first DEPENDENTS_SHOWN), as links."""
        return _job_links(job_dependents(job_id=job.pk, limit=DEPENDENTS_SHOWN))

    @admin.display(description="schedule")
    def schedule(self, job: Job) -> str:
        """A link to the schedule that fired the job (apps/schedules, named by URL only: the
        schedules app sits above this one)."""
        if job.schedule_id is None:
            return "-"
        try:
            url = reverse("admin:schedules_schedule_change", args=[job.schedule_id])
        except NoReverseMatch:
            return str(job.schedule_id)
        return format_html('<a href="{}">{}</a>', url, job.schedule_id)

    @admin.display(description="wait reason")
    def wait_reason(self, job: Job) -> str:
        # What the row says (API.md, "Sharing the pools fairly"): no query per listed job.
        return wait_reason(job) or "-"

    @admin.display(description="input")
    def shown_input(self, job: Job) -> str:
        return json.dumps(masked_input(job.type, job.input), ensure_ascii=False, indent=1)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing is allowed; edits go through the actions, never straight into the row.
        return request.method in {"GET", "HEAD"} and super().has_change_permission(request, obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        if not term:
            return queryset, False
        return queryset.filter(idempotency_key=term) | queryset.filter(client__name=term), False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.cancel_job")

    @admin.action(
        description="Retry the selected failed or canceled jobs",
        permissions=["retry"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self.apply_each(request, queryset, lambda job: services.job_retry(job=job), "retried")

    @admin.action(
        description="Cancel the selected jobs",
        permissions=["cancel"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self.apply_each(request, queryset, lambda job: services.job_cancel(job=job), "canceled")
