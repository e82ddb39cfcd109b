"""``manage.py enqueue shop.tasks.add '[2, 3]'``: enqueue a task, print its TaskResult as JSON."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.tasks import Task
from django.tasks.exceptions import TaskException
from django.utils import timezone
from django.utils.module_loading import import_string

from ._results import result_json, wait_for_end


class Command(BaseCommand):
    help = "Enqueue a @task (by dotted path) and print its TaskResult as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", help="dotted path, e.g. shop.tasks.add")
        parser.add_argument(
            "arguments", nargs="?", default="[]", help="positional arguments (JSON array)"
        )
        parser.add_argument("--kwargs", default="{}", help="keyword arguments (JSON object)")
        parser.add_argument("--priority", type=int, help="-100…100")
        parser.add_argument("--queue", help="queue_name")
        parser.add_argument("--run-after-seconds", type=float, help="run_after = now + this")
        parser.add_argument("--async", action="store_true", help="use aenqueue()/aget_result()")
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            help="then wait up to this many seconds for the end: prints enqueued and finished",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            task = import_string(options["task"])
        except ImportError as exc:
            raise CommandError(str(exc)) from exc
        if not isinstance(task, Task):
            raise CommandError(f"{options['task']} is not a @task")
        run_after = None
        if options["run_after_seconds"] is not None:
            run_after = timezone.now() + timedelta(seconds=options["run_after_seconds"])
        try:
            task = task.using(
                priority=options["priority"], queue_name=options["queue"], run_after=run_after
            )
            call_args, call_kwargs = json.loads(options["arguments"]), json.loads(options["kwargs"])
            if options["async"]:
                result = asyncio.run(task.aenqueue(*call_args, **call_kwargs))
            else:
                result = task.enqueue(*call_args, **call_kwargs)
            if not options["wait"]:
                self.stdout.write(json.dumps(result_json(result)))
                return
            enqueued = result_json(result)
            finished = wait_for_end(result.id, options["wait"], use_async=options["async"])
        except TaskException as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc
        self.stdout.write(json.dumps({"enqueued": enqueued, "finished": result_json(finished)}))
