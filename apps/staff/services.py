"""Writes of the audit log, and of who holds which staff role."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from apps.core.context import current_request_id
from apps.staff.models import AdminAuditEntry
from apps.staff.roles import ROLE_GROUPS


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


@transaction.atomic
def staff_role_set(*, user: Any, role: str | None, by: str = "") -> None:
    """Make ``user`` a staff member with exactly one role (``ROLE_GROUPS``), or, with ``role``
    None, take every Conveyor role away and close the admin to them (unless superuser). Other
    groups are left alone. Recorded in the audit log as ``staff_role``, by ``by``."""
    if role is not None and role not in ROLE_GROUPS:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLE_GROUPS)}")
    user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
    if role is not None:
        user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
    user.is_staff = role is not None or user.is_superuser
    user.save(update_fields=["is_staff"])
    AdminAuditEntry.objects.create(
        user=None,
        username=by[:150],
        action="staff_role",
        model="auth.user",
        object_ids=[str(user.pk)],
        object_count=1,
        outcome=f"{user.get_username()}: {role or 'no role'}"[:500],
        request_id=(current_request_id() or "")[:128],
    )
