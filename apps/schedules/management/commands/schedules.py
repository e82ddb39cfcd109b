"""``manage.py schedules [--client NAME] [--due] [--json]``: every schedule with its client,
cron, time zone, state and next and last runs: a table, or one JSON array."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from apps.core.replicas import replica_reads
from apps.schedules.models import Schedule
from apps.schedules.representation import schedule_to_dict


class Command(BaseCommand):
    help = "List the schedules: client, name, cron and time zone, state, next and last runs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--client", help="Only this client's schedules (by name).")
        parser.add_argument(
            "--due", action="store_true", help="Only enabled schedules whose tick has come."
        )
        parser.add_argument("--json", action="store_true", help="A JSON array instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        queryset = Schedule.objects.select_related("client").order_by("client__name", "name")
        if options["client"]:
            queryset = queryset.filter(client__name=options["client"])
        if options["due"]:
            queryset = queryset.filter(enabled=True, next_run_at__lte=timezone.now())
        # A report, not a decision: it may read a replica (seconds behind at most).
        with replica_reads():
            schedules = list(queryset)
        if options["json"]:
            rows = [{"client": s.client.name, **schedule_to_dict(s)} for s in schedules]
            self.stdout.write(json.dumps(rows, indent=2))
            return
        columns = ["client", "name", "cron", "timezone", "state", "next run", "last run", "skip"]
        table = [
            [
                s.client.name,
                s.name,
                s.cron,
                s.timezone,
                ("enabled" if s.enabled else "disabled") + f", {s.overlap}",
                _when(s.next_run_at),
                _when(s.last_run_at),
                s.last_skip_reason or "-",
            ]
            for s in schedules
        ]
        widths = [
            min(40, max([len(title), *(len(row[i]) for row in table)]))
            for i, title in enumerate(columns)
        ]
        for row in [columns, *table]:
            self.stdout.write(
                "  ".join(
                    cell[:width].ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        self.stdout.write(f"({len(table)} schedule(s); times in UTC)")


def _when(moment: Any) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")
