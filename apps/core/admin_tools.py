"""Admin helpers for big tables and read replicas.

``ReplicaListMixin``: a model admin's list page may read a replica, unless the staff user
changed something moments ago (their pin, as for API clients: apps/core/replicas.py); every
POST through the admin (actions, edits, deletions) pins the user first.

``EstimatedCountPaginator``: the list page never counts a big table in full. Django's admin
counts the filtered rows to paginate, which on a million jobs is a scan of the table on every
page view; this paginator counts exactly up to ``exact_up_to`` rows and otherwise answers with
PostgreSQL's estimate (the table's ``reltuples`` without filters, the planner's row estimate
with them). The bounded count itself gets ``count_budget_ms``: a filter no index serves (a rare
job type, say) would otherwise read the whole table to find its 10 001 rows; past the budget
the planner's estimate answers instead.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from apps.core.replicas import allow_replica_reads, is_pinned, pin, replicas_configured


def _principal(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


class ReplicaListMixin:
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if replicas_configured():
            if request.method in {"GET", "HEAD"}:
                if not is_pinned(_principal(request)):
                    allow_replica_reads()
            else:
                pin(_principal(request))
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            pin(_principal(request))
        return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc]

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            pin(_principal(request))
        return super().delete_view(request, *args, **kwargs)  # type: ignore[misc]


class EstimatedCountPaginator(Paginator):
    exact_up_to = 10_000
    count_budget_ms = 150

    @cached_property
    def count(self) -> int:
        queryset: Any = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        connection = connections[queryset.db]
        if not queryset.query.where:
            estimate = _table_estimate(connection, queryset.model._meta.db_table)
            if estimate > self.exact_up_to:
                return estimate
        capped = _count_within(connection, queryset, self.exact_up_to + 1, self.count_budget_ms)
        if capped is not None and capped <= self.exact_up_to:
            return capped
        return max(capped or 0, _plan_estimate(connection, queryset))


def _count_within(connection: Any, queryset: Any, limit: int, budget_ms: int) -> int | None:
    """``COUNT`` of at most ``limit`` rows, or None when it takes longer than ``budget_ms``."""
    if connection.vendor != "postgresql":
        return int(queryset.order_by()[:limit].count())
    try:
        with transaction.atomic(using=queryset.db):
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(budget_ms)])
            count = int(queryset.order_by()[:limit].count())
            with connection.cursor() as cursor:
                # Back to the session's own timeout for the rest of an enclosing transaction.
                cursor.execute(
                    "SELECT set_config('statement_timeout', reset_val, true) "
                    "FROM pg_settings WHERE name = 'statement_timeout'"
                )
            return count
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "57014":  # query_canceled
            raise
        return None


def _table_estimate(connection: Any, table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else -1


def _plan_estimate(connection: Any, queryset: Any) -> int:
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
