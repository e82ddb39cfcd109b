"""``manage.py migrate_with_lock``: ``migrate --noinput``, one process at a time.

Every web process runs this before serving (Procfile). A session advisory lock
makes concurrent starts take turns, so two instances never apply the same migration at once; the
second finds nothing left to do.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# An arbitrary constant that names Conveyor's migration lock.
MIGRATION_LOCK_ID = 0x0C0E7E70


class Command(BaseCommand):
    help = "Apply migrations, serialised across processes by a PostgreSQL advisory lock."

    def handle(self, *args: Any, **options: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
        try:
            call_command("migrate", interactive=False, verbosity=options["verbosity"])
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
