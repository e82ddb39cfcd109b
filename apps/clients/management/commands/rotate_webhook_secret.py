"""``manage.py rotate_webhook_secret NAME``: a new webhook secret for a client, as JSON.

The previous secret keeps signing (beside the new one) for WEBHOOK_SECRET_OVERLAP_HOURS.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.clients.models import ApiClient
from apps.clients.services import webhook_secret_rotate


class Command(BaseCommand):
    help = "Rotate a client's webhook secret; prints the new secret once, as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            client = ApiClient.objects.get(name=options["name"])
        except ApiClient.DoesNotExist:
            raise CommandError(f"No client named {options['name']!r}.") from None
        secret = webhook_secret_rotate(client=client)
        expires = client.previous_webhook_secret_expires_at
        self.stdout.write(
            json.dumps(
                {
                    "client": client.name,
                    "webhook_secret": secret,
                    "previous_secret_valid_until": expires.isoformat() if expires else None,
                }
            )
        )
