"""The operator console for jobs: find (filters, a search line of ``word:value`` terms,
apps/jobs/search.py), inspect (a job's page: its input, result and error pretty-printed, its
event timeline, its deliveries, links to its client, schedule and batch), act on one job, a
selection, or every job matching the filter (apps/jobs/bulk.py, in the background, audited).

Viewing needs ``jobs.view_job``; retry and cancel need ``jobs.retry_job`` and
``jobs.cancel_job`` (the "Conveyor operators" role, apps/staff), checked on every POST (403).

The list page stays fast on ten million jobs: it may read a replica, never counts the table in
full (apps/core/admin_tools.py), and its type and queue filters offer the registered job types
and queues instead of asking the table for its distinct values (a full scan per page view).

No staff member sees the input fields a job type marks sensitive (``sensitive_input_fields``):
the job's page, and a webhook delivery's snapshot of it, show them as ``[Filtered]``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from apps.core.admin_tools import EstimatedCountPaginator, ReplicaListMixin
from apps.core.logs import FILTERED
from apps.jobs import bulk, services
from apps.jobs.models import Job, JobBulkAction, JobEvent, JobStatus
from apps.jobs.registry import all_job_types, get_job_type, queues
from apps.jobs.representation import wait_reason
from apps.jobs.search import FILTER_PARAMETERS, SearchError, parse_search
from apps.jobs.selectors import job_dependents
from apps.staff.admin_tools import StaffModelAdmin

# A job's input, result or error is shown up to this many characters (a job's input may be
# megabytes): the rest is cut, and the page says so.
SHOWN_JSON_CHARS = 20_000


def masked_input(type_name: str, data: Any) -> Any:
    """A job's input as the admin shows it: the fields its type marks sensitive are replaced by
    ``[Filtered]``, as in logs and Sentry events."""
    job_type = get_job_type(type_name)
    if job_type is not None and isinstance(data, dict) and job_type.sensitive_input_fields:
        sensitive = job_type.sensitive_input_fields
        data = {name: FILTERED if name in sensitive else value for name, value in data.items()}
    return data


def pretty_json(data: Any, *, limit: int = SHOWN_JSON_CHARS) -> str:
    """Indented JSON in a <pre>, escaped, cut at ``limit`` characters."""
    if data is None:
        return "-"
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str)
    note = ""
    if len(text) > limit:
        note = f"\n… cut: {len(text) - limit:,} more characters (the API returns it whole)."
        text = text[:limit]
    return format_html('<pre class="conveyor-json">{}{}</pre>', text, note)


def with_zone(moment: datetime | None) -> str:
    """A time as the console shows it: to the second, in the site's zone, with the zone named."""
    if moment is None:
        return "-"
    local = timezone.localtime(moment)
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")


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
    verbose_name = "event"
    verbose_name_plural = "Timeline (every status change, oldest first)"
    fields = ("shown_at", "from_status", "to_status", "attempt", "shown_details")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    @admin.display(description="at")
    def shown_at(self, event: JobEvent) -> str:
        return with_zone(event.at)

    @admin.display(description="details")
    def shown_details(self, event: JobEvent) -> str:
        return pretty_json(event.details or None, limit=2000)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _admin_link(viewname: str, pk: Any, text: Any) -> str:
    try:
        url = reverse(viewname, args=[pk])
    except NoReverseMatch:
        return str(text)
    return format_html('<a href="{}">{}</a>', url, text)


def _list_link(query: dict[str, str], text: str) -> str:
    url = reverse("admin:jobs_job_changelist") + "?" + urlencode(query)
    return format_html('<a href="{}">{}</a>', url, text)


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
        "error_code",
        "wait_reason",
        "created",
        "finished",
    )
    list_filter = ("status", JobTypeFilter, QueueFilter, "priority")
    list_select_related = ("client",)
    paginator = EstimatedCountPaginator
    list_per_page = 50
    search_fields = ("idempotency_key",)  # shows the search box; get_search_results decides
    search_help_text = (
        "A job id, or terms: client:NAME type:NAME status:failed queue:NAME error:CODE "
        "key=value created>-2h finished<2026-11-30 input:TEXT (with a narrowing term), "
        "or an idempotency key."
    )
    show_full_result_count = False
    # Facet counts are one COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    inlines = [JobEventInline]
    actions = ["retry_selected", "cancel_selected"]
    # The job's page, section by section. A field added to ``readonly_fields`` and listed in no
    # section appears in a "Dependencies" section after "Links" (``get_fieldsets``).
    fieldsets = [
        (
            "Job",
            {
                "fields": (
                    "id",
                    "type",
                    "status",
                    "client_link",
                    "queue",
                    "priority",
                    "attempts_of",
                    "wait_reason",
                    "cancel_requested",
                    "held",
                )
            },
        ),
        (
            "Links",
            {"fields": ("schedule", "batch", "client_jobs", "deliveries")},
        ),
        ("Dependencies", {"fields": ("dependencies", "dependents")}),
        (
            "Times",
            {
                "fields": (
                    "shown_created_at",
                    "shown_run_at",
                    "shown_started_at",
                    "shown_finished_at",
                    "shown_heartbeat_at",
                )
            },
        ),
        ("Input", {"fields": ("shown_input",)}),
        ("Result", {"fields": ("shown_result", "shown_progress")}),
        ("Error", {"fields": ("shown_error",)}),
        (
            "Options",
            {
                "classes": ["collapse"],
                "fields": (
                    "max_attempts",
                    "retry_backoff_seconds",
                    "timeout_seconds",
                    "idempotency_key",
                    "unique_key",
                    "concurrency_key",
                    "concurrency_limit",
                    "webhook_url",
                    "webhook_events",
                    "shown_metadata",
                ),
            },
        ),
        (
            "Operations",
            {
                "classes": ["collapse"],
                "fields": ("version", "request_id", "task_id", "worker", "shown_enqueued_at"),
            },
        ),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The sections above, plus a "Dependencies" section after "Links" holding any
        ``readonly_fields`` another change adds (job dependencies, say) that no section lists."""
        fieldsets = list(super().get_fieldsets(request, obj))
        listed = {name for _, options in fieldsets for name in options["fields"]}
        extra = [name for name in self.readonly_fields if name not in listed]
        if extra:
            at = next(i for i, (title, _) in enumerate(fieldsets) if title == "Links") + 1
            fieldsets.insert(at, ("Dependencies", {"fields": tuple(extra)}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Everything on the page is read-only: a job changes through its actions only.
        fieldsets = self.get_fieldsets(request, obj)
        return [str(name) for _, options in fieldsets for name in options["fields"]]

    # --- The page's fields ----------------------------------------------------------------
    @admin.display(description="client")
    def client_link(self, job: Job) -> str:
        return _admin_link("admin:clients_apiclient_change", job.client_id, job.client)

    @admin.display(description="attempts")
    def attempts_of(self, job: Job) -> str:
        return f"{job.attempts} of {job.max_attempts}"

    @admin.display(description="this client's jobs")
    def client_jobs(self, job: Job) -> str:
        return _list_link({"q": f"client:{job.client_id}"}, "all jobs of this client")

    @admin.display(description="batch")
    def batch(self, job: Job) -> str:
        """A batch's jobs share their request's idempotency key (API.md, "Batches")."""
        if not job.idempotency_key:
            return "-"
        return _list_link({"q": job.idempotency_key}, "jobs submitted with the same key")

    @admin.display(description="webhook deliveries")
    def deliveries(self, job: Job) -> str:
        try:
            url = reverse("admin:webhooks_webhookdelivery_changelist")
        except NoReverseMatch:
            return "-"
        return format_html('<a href="{}?job={}">deliveries of this job</a>', url, job.pk)

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
        return _admin_link("admin:schedules_schedule_change", job.schedule_id, job.schedule_id)

    @admin.display(description="wait reason")
    def wait_reason(self, job: Job) -> str:
        # What the row says (API.md, "Sharing the pools fairly"): no query per listed job.
        return wait_reason(job) or "-"

    @admin.display(description="error code")
    def error_code(self, job: Job) -> str:
        return str(job.error.get("code", "")) if isinstance(job.error, dict) else ""

    @admin.display(description="created", ordering="id")
    def created(self, job: Job) -> str:
        return with_zone(job.created_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, job: Job) -> str:
        return with_zone(job.finished_at)

    @admin.display(description="input")
    def shown_input(self, job: Job) -> str:
        return pretty_json(masked_input(job.type, job.input))

    @admin.display(description="result")
    def shown_result(self, job: Job) -> str:
        return pretty_json(job.result)

    @admin.display(description="progress")
    def shown_progress(self, job: Job) -> str:
        return pretty_json(job.progress, limit=2000)

    @admin.display(description="error")
    def shown_error(self, job: Job) -> str:
        return pretty_json(job.error)

    @admin.display(description="metadata")
    def shown_metadata(self, job: Job) -> str:
        return pretty_json(job.metadata or None, limit=4000)

    @admin.display(description="created")
    def shown_created_at(self, job: Job) -> str:
        return with_zone(job.created_at)

    @admin.display(description="run at")
    def shown_run_at(self, job: Job) -> str:
        return with_zone(job.run_at)

    @admin.display(description="started")
    def shown_started_at(self, job: Job) -> str:
        return with_zone(job.started_at)

    @admin.display(description="finished")
    def shown_finished_at(self, job: Job) -> str:
        return with_zone(job.finished_at)

    @admin.display(description="last heartbeat")
    def shown_heartbeat_at(self, job: Job) -> str:
        return with_zone(job.heartbeat_at)

    @admin.display(description="last published")
    def shown_enqueued_at(self, job: Job) -> str:
        return with_zone(job.enqueued_at)

    # --- Permissions ----------------------------------------------------------------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing is allowed; edits go through the actions, never straight into the row.
        return request.method in {"GET", "HEAD"} and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.cancel_job")

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        # No SAVE button on a job: nothing on its page is editable.
        context.update(
            show_save=False,
            show_save_and_continue=False,
            show_save_and_add_another=False,
            show_delete=False,
        )
        return super().render_change_form(request, context, *args, **kwargs)

    # --- Search ---------------------------------------------------------------------------
    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        try:
            search = parse_search(search_term)
            queryset = search.apply(queryset)
        except SearchError as exc:
            self.message_user(request, str(exc), messages.WARNING)
            return queryset.none(), False
        if search.sort_matches and set(queryset.query.order_by) <= {"-id", "-pk"}:
            # Newest first by creation time rather than by key: the same order (ids are
            # UUIDv7), served by sorting the index's matches (see JobSearch.sort_matches).
            queryset = queryset.order_by("-created_at", "-id")
        return queryset, False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        term = request.GET.get("q", "").strip()
        if request.method == "GET" and term:
            try:
                job_id = uuid.UUID(term)
            except ValueError:
                pass
            else:
                # A pasted job id goes straight to the job.
                if self.get_queryset(request).filter(pk=job_id).exists():
                    return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job_id]))
        context = {
            **(extra_context or {}),
            **self._bulk_context(request),
        }
        return super().changelist_view(request, context)

    def _bulk_context(self, request: HttpRequest) -> dict[str, Any]:
        query = _list_query(request.GET)
        failed = request.GET.get("status__exact") == JobStatus.FAILED
        return {
            "bulk_query": query,
            "can_bulk_retry": self.has_retry_permission(request),
            "can_bulk_cancel": self.has_cancel_permission(request),
            "is_dead_letters": failed,
            "dead_letters_url": reverse("admin:jobs_job_changelist")
            + "?"
            + urlencode({"status__exact": JobStatus.FAILED}),
            "bulk_actions_url": reverse("admin:jobs_jobbulkaction_changelist"),
            "empty_message": _empty_message(request.GET),
        }

    # --- Bulk actions on every matching job -------------------------------------------------
    def get_urls(self) -> list[Any]:
        return [
            path(
                "bulk/<str:action>/",
                self.admin_site.admin_view(self.bulk_view),
                name="jobs_job_bulk",
            ),
            *super().get_urls(),
        ]

    def bulk_view(self, request: HttpRequest, action: str) -> HttpResponse:
        """GET: how many jobs the action would change, and a confirm button. POST: queue it."""
        if action not in bulk.ELIGIBLE:
            raise PermissionDenied
        allowed = (
            self.has_retry_permission(request)
            if action == "retry"
            else self.has_cancel_permission(request)
        )
        source = request.POST if request.method == "POST" else request.GET
        query = _list_query(source)
        if not allowed or not self.has_view_permission(request):
            self._audit(
                request,
                f"bulk_{action}",
                outcome=f"refused: the user may not run this action; filter: {query}",
                denied=True,
            )
            raise PermissionDenied
        try:
            count = bulk.bulk_count(action, query)
        except SearchError as exc:
            self.message_user(request, str(exc), messages.WARNING)
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist") + "?" + query)
        if request.method == "POST":
            if count == 0:
                self.message_user(request, f"No job to {action}: nothing was done.")
                return HttpResponseRedirect(reverse("admin:jobs_job_changelist") + "?" + query)
            action_row = bulk.bulk_action_create(user=request.user, action=action, query=query)
            self.message_user(
                request,
                f"Bulk {action} #{action_row.pk} of {count:,} jobs started; its progress is "
                "shown below and on the bulk actions page.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse("admin:jobs_jobbulkaction_change", args=[action_row.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{action.capitalize()} every matching job?",
            "action": action,
            "count": count,
            "count_capped": count >= bulk.COUNT_CAP,
            "query": query,
            "query_items": parse_qsl(query),
            "filter_terms": _describe(query),
            "list_url": reverse("admin:jobs_job_changelist") + ("?" + query if query else ""),
        }
        return TemplateResponse(request, "admin/jobs/job/bulk_confirm.html", context)

    # --- Actions on a selection --------------------------------------------------------------
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


def _list_query(params: Any) -> str:
    """The list's filters and search, as a query string: what a bulk action acts on."""
    kept = {
        name: params.get(name)
        for name in (*FILTER_PARAMETERS, "q")
        if params.get(name) not in (None, "")
    }
    return urlencode(kept)


def _describe(query: str) -> list[str]:
    terms = [f"{name.removesuffix('__exact')} = {value}" for name, value in parse_qsl(query)]
    return terms or ["no filter: every job"]


def _empty_message(params: Any) -> str:
    status = params.get("status__exact")
    if status == JobStatus.FAILED:
        return (
            "No failed jobs match. Nothing is waiting for a redrive: when a job fails after "
            "all its attempts it is listed here, and “Retry all matching” runs them again."
        )
    if params.get("q") or any(params.get(name) for name in FILTER_PARAMETERS):
        return (
            "No job matches this filter. Widen it: clear a filter on the right, or check the "
            "search terms (a job id, client:NAME, type:NAME, error:CODE, key=value, created>-1d)."
        )
    return (
        "No jobs yet. Jobs appear here once a client submits one (POST /v1/jobs); "
        "see README.md for submitting a first job."
    )


@admin.register(JobBulkAction)
class JobBulkActionAdmin(StaffModelAdmin):
    """The bulk actions' progress: read-only; they are started from the job list."""

    list_display = (
        "id",
        "action",
        "status",
        "progress",
        "expected",
        "done",
        "skipped",
        "requested_by",
        "requested",
        "filter",
    )
    list_filter = ("status", "action")
    ordering = ("-id",)
    fields = (
        "id",
        "action",
        "status",
        "progress",
        "filter",
        "matching_jobs",
        "expected",
        "done",
        "skipped",
        "requested_by",
        "requested",
        "finished",
        "error",
    )
    readonly_fields = fields

    @admin.display(description="progress")
    def progress(self, row: JobBulkAction) -> str:
        handled = row.done + row.skipped
        if row.status == "done":
            return f"finished: {row.done:,} changed, {row.skipped:,} left as they were"
        total = max(row.expected, handled, 1)
        return f"{handled:,} of about {row.expected:,} ({100 * handled // total}%)"

    @admin.display(description="filter")
    def filter(self, row: JobBulkAction) -> str:
        return ", ".join(_describe(row.query))

    @admin.display(description="jobs")
    def matching_jobs(self, row: JobBulkAction) -> str:
        url = reverse("admin:jobs_job_changelist") + ("?" + row.query if row.query else "")
        return format_html('<a href="{}">the list with this filter</a>', url)

    @admin.display(description="requested", ordering="requested_at")
    def requested(self, row: JobBulkAction) -> str:
        return with_zone(row.requested_at)

    @admin.display(description="finished")
    def finished(self, row: JobBulkAction) -> str:
        return with_zone(row.finished_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        # A running action's page refreshes itself until it is done.
        pk = object_id or ""
        row = JobBulkAction.objects.filter(pk=pk).first() if pk.isdigit() else None
        running = row is not None and row.status in {"pending", "running"}
        context = {**(extra_context or {}), "auto_refresh": running}
        return super().changeform_view(request, object_id, form_url, context)
