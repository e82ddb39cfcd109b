"""Job state changes as single SQL statements.

``change_job`` is the one way a job's row changes: a conditional ``UPDATE … WHERE <expected
state> RETURNING *`` whose result decides a race (no row: someone else changed the job first),
with the JobEvent row written by the same statement on PostgreSQL (a data-modifying CTE). Run
outside a transaction it is its own transaction: one round trip per transition, which is what
lets a worker process keep up with the broker.

When the change is one the job's webhook subscribes to, the same statement also writes the
webhook delivery (the outbox row, with the job row as JSON) and notifies the relay to wake the
webhook pool: no subscribed change can commit without its delivery, and none costs a second
round trip.

The SQL text for each shape of change is built once from the model's fields and cached; a call
only adapts values. On SQLite, which has no data-modifying CTEs, the event and the delivery are
further statements in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connections, transaction
from django.db.models.sql import Query
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.jobs.models import Job, JobEvent
from apps.jobs.webhook_events import JOB_PROGRESS

__all__ = ["Expr", "change_job"]


PROGRESS_EVERY = timedelta(seconds=1)


class Expr(str):
    """A SQL expression over the row as a new value, e.g. ``Expr('"attempts" + 1')``."""


# The next claimable job of a queue: queued, not held (its client is active: jobs of an inactive
# client are held, and out of the job_claimable index), highest priority then oldest. The EXISTS
# re-checks the client's flag, one primary-key probe of a small table, for the jobs queued in the
# moment between a client's deactivation and their hold (apps/jobs/holds.py).
_SELECT_NEXT_QUEUED = (
    '(SELECT "id" FROM {table} WHERE "status" = \'queued\' AND NOT "held" '
    'AND "queue" = %(w_queue)s AND EXISTS (SELECT 1 FROM {clients} c '
    'WHERE c."id" = {table}."client_id" AND c."is_active") '
    'ORDER BY "priority" DESC, "id" LIMIT 1{lock})'
)


@cache
def _fields() -> tuple[Any, ...]:
    return tuple(Job._meta.concrete_fields)


@cache
def _field(name: str) -> Any:
    return Job._meta.get_field(name)


@cache
def _columns() -> str:
    quote = connections["default"].ops.quote_name
    return ", ".join(quote(str(f.column)) for f in _fields())


# The outbox row for a subscribed change. ``to_jsonb(t)`` is the job row as the change left it;
# the webhook-id is derived from the job and its version, so it is unique per event and the
# same on every retry.
_DELIVERY_COLUMNS = (
    "job_id, client_id, event_type, sequence, webhook_id, url, job_snapshot, request_id, "
    "status, attempts, next_attempt_at, created_at, last_error"
)
_INSERT_DELIVERY = (
    "INSERT INTO {table} ({columns}) "
    'SELECT t."id", t."client_id", %(h_event)s::text, t."version", '
    "'msg_' || replace(t.\"id\"::text, '-', '') || '_' || t.\"version\", t.\"webhook_url\", "
    "to_jsonb(t), t.\"request_id\", 'pending', 0, %(h_at)s, %(h_at)s, '' FROM t "
    'WHERE t."webhook_url" IS NOT NULL AND jsonb_exists(t."webhook_events", %(h_event)s::text)'
)
# Progress events are throttled to one per second per job.
_PROGRESS_THROTTLE = (
    ' AND NOT EXISTS (SELECT 1 FROM {table} p WHERE p."job_id" = t."id" '
    'AND p."event_type" = \'job.progress\' AND p."created_at" > %(h_since)s)'
)


def _delivery_table() -> str:
    from apps.webhooks.models import WebhookDelivery

    return connections["default"].ops.quote_name(WebhookDelivery._meta.db_table)


@cache
def _statements(
    vendor: str,
    where: tuple[str, ...],
    next_in_queue: bool,
    sets: tuple[tuple[str, bool], ...],
    bump_version: bool,
    event: bool,
    async_commit: bool,
    webhook: bool,
    progress: bool,
) -> tuple[str, str | None]:
    """(statement, separate event statement or None) for one shape of change."""
    quote = connections["default"].ops.quote_name
    table = quote(Job._meta.db_table)
    assignments = [
        f"{quote(str(_field(name).column))} = " + (f"%(x_{name})s" if is_expr else f"%(s_{name})s")
        for name, is_expr in sets
    ]
    if bump_version:
        assignments.append('"version" = "version" + 1')
    conditions = [f"{quote(str(_field(name).column))} = %(w_{name})s" for name in where]
    if next_in_queue:
        lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
        # "id = (scalar subquery)" is evaluated once; "id IN (subquery)" may be re-evaluated
        # per row and would then claim every queued job.
        clients = quote(ApiClient._meta.db_table)
        conditions.append(
            '"id" = ' + _SELECT_NEXT_QUEUED.format(table=table, clients=clients, lock=lock)
        )
    columns = _columns()
    update = (
        f"UPDATE {table} SET {', '.join(assignments)} "
        f"WHERE {' AND '.join(conditions)} RETURNING {columns}"
    )
    event_table = quote(JobEvent._meta.db_table)
    event_columns = "job_id, from_status, to_status, attempt, at, details"
    if vendor != "postgresql":
        insert = (
            f"INSERT INTO {event_table} ({event_columns}) "
            "VALUES (%(e_job)s, %(e_from)s, %(e_to)s, %(e_attempt)s, %(e_at)s, %(e_details)s)"
        )
        return update, (insert if event else None)
    statement = f"WITH t AS ({update})"
    if event:
        statement += (
            f", e AS (INSERT INTO {event_table} ({event_columns}) "
            'SELECT "id", %(e_from)s, "status", "attempts", %(e_at)s, %(e_details)s FROM t)'
        )
    tail = ""
    if webhook:
        deliveries = _delivery_table()
        insert = _INSERT_DELIVERY.format(table=deliveries, columns=_DELIVERY_COLUMNS)
        if progress:
            insert += _PROGRESS_THROTTLE.format(table=deliveries)
        statement += (
            f", d AS ({insert} RETURNING 1), "
            f"n AS (SELECT pg_notify('conveyor_wakeup', 'webhooks:1') FROM d LIMIT 1)"
        )
        tail += ", (SELECT count(*) FROM n)"
    # A transaction may choose not to wait for its WAL flush (see change_job's async_commit).
    if async_commit:
        tail += ", set_config('synchronous_commit', 'off', true)"
    return f"{statement} SELECT {columns}{tail} FROM t", None


@cache
def _converters(using: str) -> tuple[Any, Any]:
    connection = connections[using]
    compiler = connection.ops.compiler("SQLCompiler")(Query(Job), connection, using)
    table = Job._meta.db_table
    converters = compiler.get_converters([f.get_col(table) for f in _fields()])
    return compiler, converters


def _to_jobs(rows: Sequence[Sequence[Any]], using: str) -> list[Job]:
    if not rows:
        return []
    compiler, converters = _converters(using)
    width = len(_fields())
    rows = [row[:width] for row in rows]
    if converters:
        rows = list(compiler.apply_converters(rows, converters))
    names = [f.attname for f in _fields()]
    return [Job.from_db(using, names, row) for row in rows]


def change_job(
    *,
    where: Mapping[str, Any],
    changes: Mapping[str, Any],
    event: tuple[str, Any, dict[str, Any]] | None,
    next_in_queue: str | None = None,
    bump_version: bool = True,
    async_commit: bool = False,
    webhook_event: str | None = None,
    using: str = "default",
) -> Job | None:
    """Apply ``changes`` to the job matching ``where`` (field → expected value); return the job
    as changed, or None when no job matched.

    ``event`` is ``(from_status, at, details)`` for the JobEvent row (its ``to_status`` and
    ``attempt`` come from the changed row). ``next_in_queue`` adds "and it is the next queued
    job of this queue" (highest priority, then oldest, skipping rows other workers hold).
    ``webhook_event`` writes the webhook delivery for that event type when the job subscribes.
    ``async_commit`` lets a standalone transition skip waiting for its WAL flush: for a change
    whose loss in a database crash is repaired anyway (a lost claim puts the job back in the
    queue, where it runs again).
    """
    connection = connections[using]
    vendor = connection.vendor
    sets = tuple((name, isinstance(value, Expr)) for name, value in changes.items())
    statement, event_statement = _statements(
        vendor,
        tuple(where),
        next_in_queue is not None,
        sets,
        bump_version,
        event is not None,
        async_commit,
        webhook_event is not None,
        webhook_event == JOB_PROGRESS,
    )
    for name, value in changes.items():
        if isinstance(value, Expr):
            statement = statement.replace(f"%(x_{name})s", value)
    params: dict[str, Any] = {}
    for name, value in where.items():
        params[f"w_{name}"] = _field(name).get_db_prep_save(value, connection)
    if next_in_queue is not None:
        params["w_queue"] = next_in_queue
    for name, value in changes.items():
        if not isinstance(value, Expr):
            params[f"s_{name}"] = _field(name).get_db_prep_save(value, connection)
    at_field = JobEvent._meta.get_field("at")
    if webhook_event is not None:
        when = event[1] if event is not None else timezone.now()
        params["h_event"] = webhook_event
        params["h_at"] = at_field.get_db_prep_save(when, connection)
        if webhook_event == JOB_PROGRESS:
            params["h_since"] = at_field.get_db_prep_save(when - PROGRESS_EVERY, connection)
    if event is not None:
        from_status, at, details = event
        params["e_from"] = from_status
        params["e_at"] = JobEvent._meta.get_field("at").get_db_prep_save(at, connection)
        params["e_details"] = JobEvent._meta.get_field("details").get_db_prep_save(
            details or {}, connection
        )
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            jobs = _to_jobs(cursor.fetchall(), using)
        return jobs[0] if jobs else None
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(statement, params)
        jobs = _to_jobs(cursor.fetchall(), using)
        if not jobs:
            return None
        job = jobs[0]
        if event_statement is not None:
            params.update(
                e_job=_field("id").get_db_prep_save(job.pk, connection),
                e_to=job.status,
                e_attempt=job.attempts,
            )
            cursor.execute(event_statement, params)
        if webhook_event is not None:
            _write_delivery_in_python(job, webhook_event, event[1] if event else timezone.now())
    return job


def _write_delivery_in_python(job: Job, event_type: str, at: Any) -> None:
    """The outbox row on databases without data-modifying CTEs (SQLite, in development)."""
    from apps.jobs.dispatch import publish_on_commit_counts
    from apps.webhooks.models import WebhookDelivery

    if not job.webhook_url or event_type not in (job.webhook_events or []):
        return
    if (
        event_type == JOB_PROGRESS
        and WebhookDelivery.objects.filter(
            job_id=job.pk, event_type=JOB_PROGRESS, created_at__gt=at - PROGRESS_EVERY
        ).exists()
    ):
        return
    WebhookDelivery.objects.create(
        job_id=job.pk,
        client_id=job.client_id,
        event_type=event_type,
        sequence=job.version,
        webhook_id=f"msg_{job.pk.hex}_{job.version}",
        url=job.webhook_url,
        job_snapshot=job_snapshot(job),
        request_id=job.request_id,
        next_attempt_at=at,
        created_at=at,
    )
    publish_on_commit_counts({"webhooks": 1})


def job_snapshot(job: Job) -> dict[str, Any]:
    """The job row as JSON, the way PostgreSQL's to_jsonb() writes it."""
    snapshot: dict[str, Any] = {}
    for field in _fields():
        value = getattr(job, field.attname)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        snapshot[field.column] = value
    return snapshot
