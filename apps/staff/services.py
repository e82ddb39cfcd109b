"""Writes of the audit log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apps.core.context import current_request_id
from apps.staff.models import AdminAuditEntry


def audit_record(
    *,
    user: Any,
    action: str,
    model: str,
    object_ids: Iterable[Any] = (),
    object_count: int | None = None,
    outcome: str = "",
    denied: bool = False,
) -> AdminAuditEntry:
    """Append one entry to the audit log. ``outcome`` must never quote a secret (callers name
    keys by row id and changes by field name). Ids beyond ``MAX_OBJECT_IDS`` are counted, not
    kept."""
    ids = [str(pk) for pk in object_ids]
    kept = ids[: AdminAuditEntry.MAX_OBJECT_IDS]
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return AdminAuditEntry.objects.create(
        user=user if authenticated else None,
        username=(user.get_username() if authenticated else "")[:150],
        action=action[:100],
        model=model[:100],
        object_ids=kept,
        object_count=len(ids) if object_count is None else object_count,
        outcome=outcome[:500],
        denied=denied,
        request_id=(current_request_id() or "")[:128],
    )
