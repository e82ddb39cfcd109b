"""Job state changes as single SQL statements.

``change_job`` is the one way a job's row changes: a conditional ``UPDATE … WHERE <expected
state> RETURNING *`` whose result decides a race (no row: someone else changed the job first),
with the JobEvent row written by the same statement on PostgreSQL (a data-modifying CTE). Run
outside a transaction it is its own transaction: one round trip per transition, which is what
lets a worker process keep up with the broker.

The SQL text for each shape of change is built once from the model's fields and cached; a call
only adapts values. On SQLite, which has no data-modifying CTEs, the event is a second statement
in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from django.db import connections, transaction
from django.db.models.sql import Query

from apps.jobs.models import Job, JobEvent

__all__ = ["Expr", "change_job"]


class Expr(str):
    """A SQL expression over the row as a new value, e.g. ``Expr('"attempts" + 1')``."""


_SELECT_NEXT_QUEUED = (
    '(SELECT "id" FROM {table} WHERE "status" = \'queued\' AND "queue" = %(w_queue)s '
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


@cache
def _statements(
    vendor: str,
    where: tuple[str, ...],
    next_in_queue: bool,
    sets: tuple[tuple[str, bool], ...],
    bump_version: bool,
    event: bool,
    async_commit: bool,
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
        conditions.append('"id" = ' + _SELECT_NEXT_QUEUED.format(table=table, lock=lock))
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
    # A transaction may choose not to wait for its WAL flush (see change_job's async_commit).
    tail = ", set_config('synchronous_commit', 'off', true)" if async_commit else ""
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
    using: str = "default",
) -> Job | None:
    """Apply ``changes`` to the job matching ``where`` (field → expected value); return the job
    as changed, or None when no job matched.

    ``event`` is ``(from_status, at, details)`` for the JobEvent row (its ``to_status`` and
    ``attempt`` come from the changed row). ``next_in_queue`` adds "and it is the next queued
    job of this queue" (highest priority, then oldest, skipping rows other workers hold).
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
    if event is not None:
        from_status, at, details = event
        params["e_from"] = from_status
        params["e_at"] = JobEvent._meta.get_field("at").get_db_prep_save(at, connection)
        params["e_details"] = JobEvent._meta.get_field("details").get_db_prep_save(
            details or {}, connection
        )
    if event_statement is None:
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
        params.update(
            e_job=_field("id").get_db_prep_save(job.pk, connection),
            e_to=job.status,
            e_attempt=job.attempts,
        )
        cursor.execute(event_statement, params)
    return job
