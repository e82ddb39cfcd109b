"""The admin's staff roles: three groups, each with exactly the permissions it needs.

Migration ``staff/0002`` created them first; after every ``migrate`` (and every ``flush``, which
tests run) ``sync_roles`` puts them back as defined here, so a deployment's roles always match
its code. Give people other mixes of rights with groups of your own, not by editing these.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

VIEW = frozenset(
    {
        "jobs.view_job",
        "jobs.view_jobevent",
        "jobs.view_jobbulkaction",
        "webhooks.view_webhookdelivery",
        "webhooks.view_webhookattempt",
        "clients.view_apiclient",
        "clients.view_apikey",
        "staff.view_adminauditentry",
        "schedules.view_schedule",
    }
)
OPERATE = frozenset(
    {
        "jobs.cancel_job",
        "jobs.retry_job",
        "webhooks.redeliver_webhookdelivery",
        # Run a schedule now, pause and resume it: operating what exists, like a retry.
        "schedules.trigger_schedule",
        "schedules.toggle_schedule",
    }
)
ADMINISTER = frozenset(
    {
        "clients.add_apiclient",
        "clients.change_apiclient",
        "clients.rotate_webhook_secret",
        "clients.add_apikey",
        "clients.revoke_apikey",
        # Creating or editing a schedule decides what runs on a client's behalf.
        "schedules.add_schedule",
        "schedules.change_schedule",
        "schedules.delete_schedule",
    }
)

# Short name → group name, and each group's permissions ("app_label.codename").
ROLE_GROUPS = {
    "viewer": "Conveyor viewers",
    "operator": "Conveyor operators",
    "admin": "Conveyor admins",
}
ROLE_PERMISSIONS = {
    "Conveyor viewers": VIEW,
    "Conveyor operators": VIEW | OPERATE,
    "Conveyor admins": VIEW | OPERATE | ADMINISTER,
}


def sync_roles(*, using: str = "default") -> None:
    """Create the role groups if missing and give each exactly its permissions."""
    wanted = set().union(*ROLE_PERMISSIONS.values())
    query = Q()
    for name in wanted:
        app_label, codename = name.split(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.using(using).filter(query).select_related("content_type")
    }
    if missing := wanted - found.keys():
        raise RuntimeError(f"staff roles: permissions missing after migrate: {sorted(missing)}")
    for group_name, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=group_name)
        group.permissions.set([found[name] for name in names])


def sync_roles_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    sync_roles(using=using)
