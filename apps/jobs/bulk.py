"""Inserting jobs with their first event: one statement per chunk, for one job or a thousand.

Submission is the hottest write path. The SQL text is built once from the model's fields; each
call only adapts values. On PostgreSQL the events and the wake-up notification ride in the same
statement (a data-modifying CTE), so a submission is one round trip, with no broker call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any

from django.db import connections, transaction

from apps.jobs.dispatch import CHANNEL, notify_payload, publish_on_commit, uses_relay
from apps.jobs.models import Job, JobEvent, JobStatus

CHUNK = 500  # rows per statement: well under PostgreSQL's and SQLite's bound-parameter limits


@cache
def _statements(vendor: str, rows: int) -> list[str]:
    quote = connections["default"].ops.quote_name
    fields = Job._meta.concrete_fields
    columns = ", ".join(quote(str(f.column)) for f in fields)
    values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * rows)
    job_table, event_table = quote(Job._meta.db_table), quote(JobEvent._meta.db_table)
    insert_jobs = f"INSERT INTO {job_table} ({columns}) VALUES {values}"
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
    for start in range(0, len(jobs), CHUNK):
        chunk = jobs[start : start + CHUNK]
        params: list[Any] = [
            field.get_db_prep_save(getattr(job, field.attname), connection)
            for job in chunk
            for field in fields
        ]
        statements = _statements(connection.vendor, len(chunk))
        if connection.vendor == "postgresql":
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
