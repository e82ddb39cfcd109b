"""``{% conveyor_dashboard %}``: the dashboard panel on the admin's index, for those who may see
it (apps/dashboard/views.py); nothing for anyone else."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from apps.dashboard.selectors import duration
from apps.dashboard.views import can_see_dashboard, render_panel

register = template.Library()


@register.simple_tag(takes_context=True)
def conveyor_dashboard(context: dict[str, Any]) -> SafeString:
    request = context.get("request")
    if request is None or not can_see_dashboard(request.user):
        return mark_safe("")
    _, html = render_panel(request)
    return mark_safe(html)  # noqa: S308 - a rendered template


@register.filter(name="wait")
def wait(seconds: float | None) -> str:
    """``{{ q.row.oldest_wait_seconds|wait }}``: 45 s, 12 min, 3 h 5 min; a dash when none waits."""
    return "\u2013" if seconds is None else duration(seconds)
