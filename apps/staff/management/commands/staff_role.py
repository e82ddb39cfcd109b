"""``manage.py staff_role USERNAME ROLE``: give a staff member one of the admin's roles.

ROLE is ``viewer``, ``operator`` or ``admin`` (docs/operations.md, "Staff roles"), or ``none``
to take every Conveyor role away. The user must exist (``createsuperuser`` or the admin's user
page create one); they become staff. Recorded in the audit log.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.staff.roles import ROLE_GROUPS
from apps.staff.services import staff_role_set


class Command(BaseCommand):
    help = "Give a staff member one admin role (viewer, operator, admin), or none."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=[*ROLE_GROUPS, "none"])

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        role = None if options["role"] == "none" else options["role"]
        staff_role_set(user=user, role=role, by="manage.py staff_role")
        self.stdout.write(f"{user.get_username()}: {role or 'no Conveyor role'}")
