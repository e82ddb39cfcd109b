"""``manage.py demo_client``: the local demo client for ``make run``, created once.

Its key is kept in var/demo-client.json (local state, never committed) so that each ``make run``
can print it again; a plain key cannot be recovered from the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.clients.models import ApiClient
from apps.clients.services import client_create

DEMO_NAME = "demo"


class Command(BaseCommand):
    help = "Create the demo client once and print its API key (local development)."

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.VAR_DIR) / "demo-client.json"
        saved = json.loads(path.read_text()) if path.exists() else None
        if saved is None or not ApiClient.objects.filter(name=saved["client"]).exists():
            name = DEMO_NAME
            if ApiClient.objects.filter(name=name).exists():
                name = f"{DEMO_NAME}-{ApiClient.objects.count()}"
            client, api_key = client_create(name=name)
            saved = {
                "client": client.name,
                "api_key": api_key,
                "webhook_secret": client.webhook_secret,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(saved))
            path.chmod(0o600)
        self.stdout.write(
            "\nDemo client '{client}'. Try:\n"
            "  export CONVEYOR_KEY={api_key}\n"
            '  curl -s -X POST localhost:8000/api/v1/jobs -H "Authorization: Bearer $CONVEYOR_KEY" '
            "-H 'Content-Type: application/json' "
            '-d \'{{"type": "diagnostics.echo", "input": {{"message": "hello"}}}}\'\n'.format(
                **saved
            )
        )
