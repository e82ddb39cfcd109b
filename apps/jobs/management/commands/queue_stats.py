"""``manage.py queue_stats [--json]``: queue depths (broker), jobs per status (database) and
the busiest clients' running and waiting jobs per queue."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.core.replicas import replica_reads
from apps.jobs.selectors import queue_statistics


class Command(BaseCommand):
    help = "Print each queue's depth and oldest waiting job, and the number of jobs per status."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="One JSON object instead of tables."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A report, not a decision: it may read a replica (seconds behind at most).
        with replica_reads():
            stats = queue_statistics()
        if options["json"]:
            self.stdout.write(json.dumps(stats, indent=2))
            return
        self.stdout.write(
            f"{'queue':<20} {'broker depth':>12} {'queued jobs':>12} {'oldest wait s':>14}"
        )
        for name, row in stats["queues"].items():
            depth = "?" if row["depth"] is None else str(row["depth"])
            oldest = (
                "-"
                if row["oldest_queued_age_seconds"] is None
                else f"{row['oldest_queued_age_seconds']:.1f}"
            )
            self.stdout.write(f"{name:<20} {depth:>12} {row['queued']:>12} {oldest:>14}")
        # Broker messages are wake-ups (one drains many jobs): the backlog is "queued jobs".
        self.stdout.write("(broker depth counts wake-up messages, not jobs)")
        self.stdout.write("")
        self.stdout.write(f"{'status':<20} {'jobs':>12}")
        for status, count in stats["statuses"].items():
            self.stdout.write(f"{status:<20} {count:>12}")
        self.stdout.write("")
        self.stdout.write(f"{'busiest clients':<30} {'queue':<20} {'running':>8} {'waiting':>8}")
        for entry in stats["clients"]:
            self.stdout.write(
                f"{entry['client'][:30]:<30} {entry['queue'][:20]:<20} "
                f"{entry['running']:>8} {entry['waiting']:>8}"
            )
