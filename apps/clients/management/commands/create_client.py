"""``manage.py create_client NAME [--unlimited] [--max-running N] [--weight W]``: a new client
and its first API key, as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.clients.services import client_create
from apps.core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create an API client; prints its API key and webhook secret once, as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--unlimited",
            action="store_true",
            help="A trusted client with no rate limits or quotas (internal services, load tests).",
        )

        parser.add_argument(
            "--max-running",
            type=int,
            default=None,
            help="Most jobs running at once (default: DEFAULT_MAX_RUNNING_JOBS, unset: no cap).",
        )
        parser.add_argument(
            "--weight",
            type=int,
            default=1,
            help="Share of the pools against other clients with work waiting (default 1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            client, api_key = client_create(
                name=options["name"],
                unlimited=options["unlimited"],
                max_running_jobs=options["max_running"],
                weight=options["weight"],
            )
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            json.dumps(
                {"client": client.name, "api_key": api_key, "webhook_secret": client.webhook_secret}
            )
        )
