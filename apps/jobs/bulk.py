"""Inserting jobs with their first event: one statement per chunk, for one job or a thousand.

Submission is the hottest write path. The SQL text is built once from the model's fields; each
call only adapts values. On PostgreSQL the events and the wake-up notification ride in the same
statement (a data-modifying CTE), so a submission is one round trip, with no broker call.

On PostgreSQL a single job is a ``VALUES`` row; several jobs are one ``jsonb`` parameter (an array
of rows, serialised by orjson in one C call) that ``jsonb_populate_recordset`` turns back into
rows of the table's own column types. The statement text is then the same whatever the number
of rows: a 1000-row ``VALUES`` statement of 29 000 placeholders cost more CPU for the driver to
convert on every call, and 29 000 values to adapt one by one, than everything else about the
batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any

import orjson
from django.db import connections, models, transaction
from psycopg.types.json import Jsonb

from apps.jobs.dispatch import CHANNEL, notify_payload, publish_on_commit, uses_relay
from apps.jobs.models import Job, JobEvent, JobStatus

CHUNK = 500  # rows per statement on SQLite: under its bound-parameter limit
PG_CHUNK = 1000  # rows per statement on PostgreSQL (a whole batch)


@cache
def _statements(vendor: str, rows: int) -> list[str]:
    connection = connections["default"]
    quote = connection.ops.quote_name
    fields = Job._meta.concrete_fields
    columns = ", ".join(quote(str(f.column)) for f in fields)
    job_table, event_table = quote(Job._meta.db_table), quote(JobEvent._meta.db_table)
    if vendor == "postgresql" and rows > 1:
        source = f"SELECT {columns} FROM jsonb_populate_recordset(NULL::{job_table}, %s::jsonb)"
    else:
        source = "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * rows)
    insert_jobs = f"INSERT INTO {job_table} ({columns}) {source}"
    event_columns = "job_id, from_status, to_status, attempt, at, details"
    if vendor == "postgresql":
        # One statement: the jobs, their creation events, and (when there are queued jobs) the
        # wake-up notification that PostgreSQL delivers to the relay on commit.
        return [
            f"WITH j AS ({insert_jobs} RETURNING id, status, created_at), "
            f"e AS (INSERT INTO {event_table} ({event_columns}) "
            "SELECT id, '', status, 0, created_at, '{}'::jsonb FROM j) "
            "SELECT pg_notify(%s, %s) WHERE %s"
        ]
    event_values = ", ".join(["(%s, '', %s, 0, %s, '{}')"] * rows)
    return [insert_jobs, f"INSERT INTO {event_table} ({event_columns}) VALUES {event_values}"]


def atomic_unless_single_statement(using: str = "default") -> AbstractContextManager[Any]:
    """A transaction, unless ``insert_jobs`` of one chunk is a single statement here (then the
    statement is its own transaction and BEGIN/COMMIT would only add round trips)."""
    if connections[using].vendor == "postgresql":
        return nullcontext()
    return transaction.atomic(using=using)


def insert_jobs(jobs: Sequence[Job], *, using: str = "default") -> None:
    """INSERT ``jobs`` (built in memory, ids set) with one creation event each, and wake the
    pools of the queued ones once the transaction commits."""
    connection = connections[using]
    fields = Job._meta.concrete_fields
    relay = uses_relay(using)
    postgresql = connection.vendor == "postgresql"
    size = PG_CHUNK if postgresql else CHUNK
    for start in range(0, len(jobs), size):
        chunk = jobs[start : start + size]
        params: list[Any]
        if postgresql and len(chunk) > 1:
            params = [Jsonb(_rows_json(chunk), dumps=_as_is)]
        elif postgresql:
            params = [
                _pg_value(job, column, connection) for job in chunk for column in _row_columns()
            ]
        else:
            params = [
                field.get_db_prep_save(getattr(job, field.attname), connection)
                for job in chunk
                for field in fields
            ]
        statements = _statements(connection.vendor, len(chunk))
        if postgresql:
            queued = Counter(job.queue for job in chunk if job.status == JobStatus.QUEUED)
            params += [CHANNEL, notify_payload(queued), bool(queued) and relay]
        with connection.cursor() as cursor:
            cursor.execute(statements[0], params)
            if len(statements) > 1:
                id_field, at_field = Job._meta.pk, Job._meta.get_field("created_at")
                event_params: list[Any] = []
                for job in chunk:
                    event_params += [
                        id_field.get_db_prep_save(job.pk, connection),
                        job.status,
                        at_field.get_db_prep_save(job.created_at, connection),
                    ]
                cursor.execute(statements[1], event_params)
        for job in chunk:
            job._state.adding = False
            job._state.db = using
    if not relay:
        publish_on_commit([job for job in jobs if job.status == JobStatus.QUEUED], using=using)


def _as_is(data: bytes) -> bytes:
    return data


@cache
def _row_columns() -> list[tuple[str, str, Any, Any]]:
    """(column, attribute, JSON encoder's ``default`` or None for a plain column, field)."""
    columns = []
    for field in Job._meta.concrete_fields:
        default = None
        if isinstance(field, models.JSONField):
            default = field.encoder().default if field.encoder is not None else _not_json
        columns.append((str(field.column), field.attname, default, field))
    return columns


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(value: Any, default: Any) -> bytes:
    return orjson.dumps(value, default=default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def _pg_value(job: Job, column: tuple[str, str, Any, Any], connection: Any) -> Any:
    """One bound value of a single-row INSERT: JSON columns encoded as in ``_rows_json``."""
    _, attname, default, field = column
    value = getattr(job, attname)
    if default is None:
        return field.get_db_prep_save(value, connection)
    return None if value is None else Jsonb(_encode(value, default), dumps=_as_is)


def _rows_json(jobs: Sequence[Job]) -> bytes:
    """The jobs as a JSON array of {column: value}. A JSON column's value is encoded as Django
    would store it (its field's encoder decides what plain JSON cannot say, datetimes included),
    and embedded as is; other columns are numbers, strings, UUIDs and datetimes (RFC 3339 with
    microseconds), which PostgreSQL reads back into the column's type exactly."""
    columns = _row_columns()
    rows = []
    for job in jobs:
        row: dict[str, Any] = {}
        for column, attname, default, _ in columns:
            value = getattr(job, attname)
            if default is not None and value is not None:
                value = orjson.Fragment(_encode(value, default))
            row[column] = value
        rows.append(row)
    return orjson.dumps(rows)
