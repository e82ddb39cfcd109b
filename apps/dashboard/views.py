"""The operator dashboard: the admin's index shows it (``dashboard/index.html``), and
``dashboard_data`` answers its refresh: the same panel, rendered again, as JSON.

Who sees it: active staff users who may view jobs (``jobs.view_job``, every role of
apps/staff/roles.py). Anyone else gets nothing: the index shows no panel, the JSON endpoint 403.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core.replicas import replica_reads
from apps.dashboard.charts import bar_chart
from apps.dashboard.selectors import DAY_BUCKET_MINUTES, HOUR_MINUTES, Dashboard, dashboard

PERMISSION = "jobs.view_job"


def can_see_dashboard(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def panel_context(board: Dashboard) -> dict[str, Any]:
    queues = [
        {
            "row": q,
            "hour_chart": bar_chart(q.hour, label=f"{q.name}: jobs per minute, last hour"),
            "day_chart": bar_chart(
                q.day, label=f"{q.name}: jobs per {DAY_BUCKET_MINUTES} minutes, last 24 hours"
            ),
            "hour_rate": q.per_minute(q.hour, HOUR_MINUTES),
            "day_rate": q.per_minute(q.day, 24 * 60),
            "hour_ok": q.hour.total_succeeded if q.hour else 0,
            "hour_failed": q.hour.total_failed if q.hour else 0,
            "day_ok": q.day.total_succeeded if q.day else 0,
            "day_failed": q.day.total_failed if q.day else 0,
        }
        for q in board.queues
    ]
    # How often the page asks for fresh figures (the panel carries it: a changed setting reaches
    # open pages at their next refresh).
    refresh = settings.DASHBOARD_REFRESH_SECONDS
    return {
        "board": board,
        "queues": queues,
        "refresh_seconds": int(refresh) if refresh == int(refresh) else refresh,
    }


def render_panel(request: HttpRequest) -> tuple[Dashboard, str]:
    # A report, not a decision: it may read a replica (seconds behind at most).
    with replica_reads():
        board = dashboard()
    return board, render_to_string("dashboard/panel.html", panel_context(board), request)


def _figures(board: Dashboard) -> dict[str, Any]:
    return {
        "generated_at": board.now.isoformat(),
        "counted_to": board.counted_to.isoformat() if board.counted_to else None,
        "queues": [
            {
                "name": q.name,
                "waiting": q.waiting,
                "oldest_wait_seconds": q.oldest_wait_seconds,
                "running": q.running,
                "overdue": q.overdue,
                "workers": q.workers,
                "processes": q.processes,
                "last_hour": {
                    "succeeded": q.hour.total_succeeded if q.hour else 0,
                    "failed": q.hour.total_failed if q.hour else 0,
                    "per_minute": q.per_minute(q.hour, HOUR_MINUTES),
                },
                "last_24h": {
                    "succeeded": q.day.total_succeeded if q.day else 0,
                    "failed": q.day.total_failed if q.day else 0,
                    "per_minute": q.per_minute(q.day, 24 * 60),
                },
            }
            for q in board.queues
        ],
        "job_types": board.job_types,
        "clients": board.clients,
        "deliveries": board.deliveries,
        "attention": [
            {"kind": a.kind, "text": a.text, "url": a.url, "count": a.count}
            for a in board.attention
        ],
    }


@never_cache
@require_GET
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The dashboard's figures and its panel's HTML; 403 for anyone who may not see it."""
    if not can_see_dashboard(request.user):
        return JsonResponse(
            {"error": {"code": "permission_denied", "message": "Staff only."}}, status=403
        )
    board, html = render_panel(request)
    return JsonResponse({"html": html, "figures": _figures(board)})
