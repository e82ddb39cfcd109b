"""``conveyor``: the command line for Conveyor (configured by CONVEYOR_URL and CONVEYOR_API_KEY).

Human tables by default, ``--json`` for scripts (the API's objects as they came). The exit status
says what went wrong (EXIT_CODES, documented in clients/python/README.md). argparse and plain
text keep the package to one dependency (httpx): the progress bar is one line redrawn on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from conveyor_client import errors
from conveyor_client._version import __version__
from conveyor_client.client import Client
from conveyor_client.models import Job, Schedule

# The exit status of each failure, by the API's error code (and the client's own).
EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own, and a bad --input
EXIT_CODES: dict[str, int] = {
    "error": 1,
    "validation_error": 3,
    "bad_request": 3,
    "not_authenticated": 4,
    "permission_denied": 4,
    "not_found": 5,
    "invalid_state": 6,
    "conflict": 6,
    "idempotency_in_progress": 6,
    "idempotency_conflict": 6,
    "already_exists": 6,
    "limit_reached": 6,
    "rate_limited": 7,
    "quota_exceeded": 7,
    "payload_too_large": 8,
    "unsupported_media_type": 8,
    "method_not_allowed": 8,
    "internal_error": 9,
    "service_unavailable": 9,
    "connection_failed": 10,
    "wait_timeout": 11,
}
# With --wait (or `conveyor wait`): the job ended, but not well.
EXIT_JOB_FAILED = 12
EXIT_JOB_CANCELED = 13


def exit_code(error: errors.ConveyorError) -> int:
    return EXIT_CODES.get(error.code) or EXIT_CODES.get(type(error).code, 1)


class UsageError(Exception):
    pass


def _json_arg(text: str) -> Any:
    """``--input '{"a": 1}'``, ``--input @file.json`` or ``--input @-`` (stdin)."""
    try:
        if text.startswith("@"):
            source = sys.stdin.read() if text == "@-" else Path(text[1:]).read_text()
            return json.loads(source)
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--input: {exc}") from exc


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, str] | None:
    if not items:
        return None
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{flag} takes key=value, not {item!r}")
        pairs[key] = value
    return pairs


def _table(rows: Iterable[Sequence[Any]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _job_rows(jobs: Iterable[Job]) -> Iterable[list[Any]]:
    for job in jobs:
        progress = f"{job.progress.percent}%" if job.progress else ""
        yield [job.id, job.type, job.status, progress, job.attempts, _when(job.created_at)]


JOB_HEADERS = ("ID", "TYPE", "STATUS", "PROGRESS", "ATTEMPTS", "CREATED")


def _show_job(job: Job, out: TextIO) -> None:
    fields = [
        ("id", job.id),
        ("type", job.type),
        ("status", job.status + (f" ({job.wait_reason})" if job.wait_reason else "")),
        ("queue", job.queue),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("progress", f"{job.progress.percent}% {job.progress.message}" if job.progress else ""),
        ("created", _when(job.created_at)),
        ("run at", _when(job.run_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("input", json.dumps(job.input)),
        ("result", json.dumps(job.result) if job.result is not None else ""),
        ("error", f"{job.error.code}: {job.error.message}" if job.error else ""),
        ("metadata", json.dumps(job.metadata) if job.metadata else ""),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        if value:
            out.write(f"{name.ljust(width)}  {value}\n")


def _show_schedule(schedule: Schedule, out: TextIO) -> None:
    _table(_schedule_rows([schedule]), SCHEDULE_HEADERS, out)
    out.write(f"job: {json.dumps(schedule.job)}\n")


SCHEDULE_HEADERS = ("ID", "NAME", "CRON", "TIMEZONE", "ENABLED", "NEXT RUN", "LAST JOB")


def _schedule_rows(schedules: Iterable[Schedule]) -> Iterable[list[Any]]:
    for s in schedules:
        next_run = _when(s.next_run_at)
        yield [
            s.id,
            s.name,
            s.cron,
            s.timezone,
            "yes" if s.enabled else "no",
            next_run,
            s.last_job_id,
        ]


class ProgressBar:
    """One line on stderr, redrawn as the job's own progress changes (only on a terminal)."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.drawn = False

    def __call__(self, job: Job) -> None:
        if job.progress is None:
            return
        percent = max(0, min(100, job.progress.percent))
        filled = self.width * percent // 100
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {percent:3d}% {job.progress.message}"[:120]
        if self.stream.isatty():
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()


def _emit(data: Any, args: argparse.Namespace, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2 if out.isatty() else None) + "\n")


def _finish_job(job: Job, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        _emit(job.raw, args, out)
    else:
        _show_job(job, out)
    if job.status == "failed":
        return EXIT_JOB_FAILED
    if job.status == "canceled" and getattr(args, "waited", False):
        return EXIT_JOB_CANCELED
    return EXIT_OK


def _wait(client: Client, job: Job, args: argparse.Namespace, err: TextIO) -> Job:
    bar = None if args.json or args.quiet else ProgressBar(err)
    try:
        return client.wait(job.id, timeout=args.timeout, on_progress=bar)
    finally:
        if bar is not None:
            bar.close()


def cmd_submit(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    payload = _json_arg(args.input) if args.input is not None else {}
    if not isinstance(payload, dict):
        raise UsageError("--input must be a JSON object")
    options: dict[str, Any] = {
        "priority": args.priority,
        "delay_seconds": args.delay,
        "run_at": args.run_at,
        "max_attempts": args.max_attempts,
        "timeout_seconds": args.job_timeout,
        "webhook_url": args.webhook_url,
        "metadata": _pairs(args.metadata, "--metadata"),
        "idempotency_key": args.idempotency_key,
        "unique_key": args.unique_key,
        "unique_for_seconds": args.unique_for,
        "concurrency_key": args.concurrency_key,
        "concurrency_limit": args.concurrency_limit,
        "depends_on": args.depends_on or None,
    }
    job = client.submit(args.type, payload, **{k: v for k, v in options.items() if v is not None})
    if args.wait:
        job = _wait(client, job, args, err)
        args.waited = True
    return _finish_job(job, args, out)


def cmd_get(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _finish_job(client.get(args.id), args, out)


def cmd_wait(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = _wait(client, client.get(args.id), args, err)
    args.waited = True
    return _finish_job(job, args, out)


def cmd_cancel(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _finish_job(client.cancel(args.id), args, out)


def cmd_retry(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _finish_job(client.retry(args.id), args, out)


def cmd_ls(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    jobs = client.list(
        status=args.status,
        type=args.type,
        queue=args.queue,
        metadata=_pairs(args.metadata, "--metadata"),
        limit=min(args.limit, 100),
    )
    chosen = list(islice(jobs, args.limit))
    if args.json:
        _emit([job.raw for job in chosen], args, out)
    else:
        _table(_job_rows(chosen), JOB_HEADERS, out)
    return EXIT_OK


def cmd_types(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    types = client.job_types()
    if args.json:
        _emit([t.raw for t in types], args, out)
    else:
        rows = [[t.name, t.queue, t.timeout_seconds, t.max_attempts, t.description] for t in types]
        _table(rows, ("NAME", "QUEUE", "TIMEOUT", "ATTEMPTS", "DESCRIPTION"), out)
    return EXIT_OK


def _schedule_out(schedule: Schedule, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        _emit(schedule.raw, args, out)
    else:
        _show_schedule(schedule, out)
    return EXIT_OK


def cmd_schedules(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    action = args.schedule_command
    if action in (None, "ls"):
        schedules = list(client.list_schedules())
        if args.json:
            _emit([s.raw for s in schedules], args, out)
        else:
            _table(_schedule_rows(schedules), SCHEDULE_HEADERS, out)
        return EXIT_OK
    if action == "get":
        return _schedule_out(client.get_schedule(args.id), args, out)
    if action == "create":
        job = {"type": args.type, "input": _json_arg(args.input) if args.input else {}}
        schedule = client.create_schedule(
            args.name,
            args.cron,
            job,
            timezone=args.timezone,
            enabled=False if args.disabled else None,
            overlap=args.overlap,
        )
        return _schedule_out(schedule, args, out)
    if action == "update":
        changes: dict[str, Any] = {
            "name": args.name,
            "cron": args.cron,
            "timezone": args.timezone,
            "overlap": args.overlap,
            "enabled": {"enable": True, "disable": False}.get(args.state or ""),
        }
        return _schedule_out(client.update_schedule(args.id, **changes), args, out)
    if action == "delete":
        client.delete_schedule(args.id)
        if not args.json:
            out.write(f"deleted {args.id}\n")
        return EXIT_OK
    if action == "trigger":
        return _finish_job(client.trigger_schedule(args.id), args, out)
    raise UsageError(f"unknown schedules command {action}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Submit and follow Conveyor jobs. Reads CONVEYOR_URL and CONVEYOR_API_KEY.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--url", default=os.environ.get("CONVEYOR_URL"), help="$CONVEYOR_URL")
    parser.add_argument("--api-key", default=os.environ.get("CONVEYOR_API_KEY"))
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.add_argument("--http-timeout", type=float, default=30.0, help="seconds per request")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="submit a job")
    submit.add_argument("type")
    submit.add_argument("--input", "-i", help="JSON object, @file or @- (stdin)")
    submit.add_argument("--wait", "-w", action="store_true", help="wait for the outcome")
    submit.add_argument("--timeout", type=float, help="with --wait: give up after seconds")
    submit.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    submit.add_argument("--priority", choices=("low", "normal", "high"))
    submit.add_argument("--delay", type=float, help="delay_seconds")
    submit.add_argument("--run-at", help="RFC 3339")
    submit.add_argument("--max-attempts", type=int)
    submit.add_argument("--job-timeout", type=int, help="timeout_seconds of the job")
    submit.add_argument("--webhook-url")
    submit.add_argument("--metadata", "-m", action="append", metavar="KEY=VALUE")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--unique-key")
    submit.add_argument("--unique-for", type=int, metavar="SECONDS")
    submit.add_argument("--concurrency-key")
    submit.add_argument("--concurrency-limit", type=int)
    submit.add_argument("--depends-on", action="append", metavar="JOB_ID")
    submit.set_defaults(handler=cmd_submit)

    for name, handler, text in (
        ("get", cmd_get, "show a job"),
        ("cancel", cmd_cancel, "cancel a job"),
        ("retry", cmd_retry, "run a failed or canceled job again"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("id")
        command.set_defaults(handler=handler)

    wait = sub.add_parser("wait", help="wait for a job to finish")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float)
    wait.add_argument("--quiet", "-q", action="store_true")
    wait.set_defaults(handler=cmd_wait)

    ls = sub.add_parser("ls", help="list your jobs, newest first")
    ls.add_argument("--status", action="append", help="repeat or comma-separate")
    ls.add_argument("--type", action="append")
    ls.add_argument("--queue", action="append")
    ls.add_argument("--metadata", "-m", action="append", metavar="KEY=VALUE")
    ls.add_argument("--limit", "-n", type=int, default=50, help="at most this many (50)")
    ls.set_defaults(handler=cmd_ls)

    sub.add_parser("types", help="the job types you can submit").set_defaults(handler=cmd_types)

    schedules = sub.add_parser("schedules", help="recurring jobs")
    schedules.set_defaults(handler=cmd_schedules, schedule_command=None)
    actions = schedules.add_subparsers(dest="schedule_command")
    actions.add_parser("ls", help="list them")
    for name in ("get", "delete", "trigger"):
        actions.add_parser(name).add_argument("id")
    create = actions.add_parser("create", help="NAME CRON TYPE [--input JSON]")
    create.add_argument("name")
    create.add_argument("cron", help='5 fields, e.g. "30 2 * * *"')
    create.add_argument("type")
    create.add_argument("--input", "-i")
    create.add_argument("--timezone")
    create.add_argument("--overlap", choices=("skip", "allow"))
    create.add_argument("--disabled", action="store_true")
    update = actions.add_parser("update")
    update.add_argument("id")
    update.add_argument("--name")
    update.add_argument("--cron")
    update.add_argument("--timezone")
    update.add_argument("--overlap", choices=("skip", "allow"))
    update.add_argument("--enable", dest="state", action="store_const", const="enable")
    update.add_argument("--disable", dest="state", action="store_const", const="disable")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url or not args.api_key:
        parser.error("set CONVEYOR_URL and CONVEYOR_API_KEY (or --url and --api-key)")
    try:
        with Client(args.url, args.api_key, timeout=args.http_timeout) as client:
            code: int = args.handler(client, args, out, err)
            return code
    except UsageError as exc:
        err.write(f"conveyor: {exc}\n")
        return EXIT_USAGE
    except errors.WaitTimeout as exc:
        _finish_job(exc.job, args, out)
        err.write(f"conveyor: {exc.message}\n")
        return EXIT_CODES["wait_timeout"]
    except errors.ConveyorError as exc:
        if args.json:
            error = {"code": exc.code, "message": exc.message, "details": exc.details}
            err.write(json.dumps({"error": {**error, "request_id": exc.request_id}}) + "\n")
        else:
            err.write(f"conveyor: {exc}\n")
            if exc.request_id:
                err.write(f"request id: {exc.request_id}\n")
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
