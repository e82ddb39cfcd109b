"""``manage.py task_result ID [--wait 30]``: a task's result as JSON, optionally once finished."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.tasks.exceptions import TaskException

from ._results import result_json, wait_for_end


class Command(BaseCommand):
    help = "Print a task's TaskResult as JSON (with --wait, once it has finished)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id")
        parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the end")
        parser.add_argument("--async", action="store_true", help="use aget_result()")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = wait_for_end(options["id"], options["wait"], use_async=options["async"])
        except TaskException as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc
        self.stdout.write(json.dumps(result_json(result)))
