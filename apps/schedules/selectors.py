"""Reads of schedules: one of a client's, a page of them."""

from __future__ import annotations

import uuid
from typing import Any

from apps.core.errors import NotFound
from apps.schedules.models import Schedule


def schedule_get_for_client(*, client_id: Any, schedule_id: str) -> Schedule:
    """The client's schedule, or NotFound (also for a malformed id or another client's)."""
    try:
        pk = uuid.UUID(schedule_id)
    except ValueError:
        raise NotFound() from None
    schedule = Schedule.objects.filter(pk=pk, client_id=client_id).first()
    if schedule is None:
        raise NotFound()
    return schedule


def schedules_page_for_client(
    *, client_id: Any, after: uuid.UUID | None, limit: int
) -> tuple[list[Schedule], uuid.UUID | None]:
    """Up to ``limit`` of the client's schedules, newest first, after the cursor ``after``;
    and the cursor of the next page, or None at the end."""
    queryset = Schedule.objects.filter(client_id=client_id).order_by("-id")
    if after is not None:
        queryset = queryset.filter(pk__lt=after)
    rows = list(queryset[: limit + 1])
    next_pk = rows[limit - 1].pk if len(rows) > limit else None
    return rows[:limit], next_pk
