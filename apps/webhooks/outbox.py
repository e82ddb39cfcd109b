"""The webhook outbox: which job changes become deliveries, and what a delivery row holds.

A subscribed job change writes its delivery in the same statement as the change, so no
subscribed change commits without its delivery and none costs a second round trip: the job
store (apps/jobs/store.py) adds ``delivery_statement`` to its UPDATE. This module is the store's
outbox, registered by the webhooks app at start-up, so that jobs import nothing from webhooks.
Everything a delivery row is made of is defined here, once:

- its columns (``DELIVERY_COLUMNS``), written from the changed job row;
- its ``webhook-id``: ``msg_<job id without dashes>_<job version>``, unique per event and the
  same on every retry (receivers deduplicate on it);
- its event snapshot: the job row as the change left it, as PostgreSQL's ``to_jsonb`` writes it,
  read back by ``job_from_snapshot`` when the delivery is rendered;
- the progress throttle: at most one ``job.progress`` delivery per job per ``PROGRESS_EVERY``.

A written delivery wakes the webhook pool through the relay (``NOTIFY`` at commit).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connections

from apps.jobs.dispatch import CHANNEL
from apps.jobs.models import Job
from apps.jobs.queues import WEBHOOKS_QUEUE
from apps.jobs.webhook_events import JOB_PROGRESS
from apps.webhooks.models import DeliveryStatus, WebhookDelivery

__all__ = [
    "PROGRESS_EVERY",
    "delivery_params",
    "delivery_statement",
    "is_throttled",
    "job_from_snapshot",
    "job_snapshot",
]

PROGRESS_EVERY = timedelta(seconds=1)

# Written from the changed job row ``t``: (delivery column, value).
DELIVERY_COLUMNS = (
    ("job_id", 't."id"'),
    ("client_id", 't."client_id"'),
    ("event_type", "%(outbox_event)s::text"),
    ("sequence", 't."version"'),
    ("webhook_id", "'msg_' || replace(t.\"id\"::text, '-', '') || '_' || t.\"version\""),
    ("url", 't."webhook_url"'),
    ("job_snapshot", "to_jsonb(t)"),
    ("request_id", 't."request_id"'),
    ("status", f"'{DeliveryStatus.PENDING.value}'"),
    ("attempts", "0"),
    ("next_attempt_at", "%(outbox_at)s"),
    ("created_at", "%(outbox_at)s"),
    ("last_error", "''"),
)

_INSERT = (
    "INSERT INTO {deliveries} ({columns}) SELECT {values} FROM t "
    'WHERE t."webhook_url" IS NOT NULL AND jsonb_exists(t."webhook_events", %(outbox_event)s::text)'
)
_PROGRESS_THROTTLE = (
    ' AND NOT EXISTS (SELECT 1 FROM {deliveries} p WHERE p."job_id" = t."id" '
    'AND p."event_type" = \'{progress}\' AND p."created_at" > %(outbox_since)s)'
)
_WAKE_POOL = f"SELECT pg_notify('{CHANNEL}', '{WEBHOOKS_QUEUE}:1') FROM outbox_d LIMIT 1"


@cache
def delivery_statement(*, throttled: bool) -> str:
    """The outbox's part of a job change: CTEs ``outbox_d`` (the delivery written for the
    changed job row ``t``, when the job subscribes to the event) and ``outbox_n`` (the pool's
    wake-up, sent at commit when a delivery was written). Its parameters come from
    ``delivery_params``. A statement that includes it must read ``outbox_n``: PostgreSQL always
    runs a data-modifying CTE, but a plain SELECT only when something reads it."""
    deliveries = connections["default"].ops.quote_name(WebhookDelivery._meta.db_table)
    insert = _INSERT.format(
        deliveries=deliveries,
        columns=", ".join(column for column, _ in DELIVERY_COLUMNS),
        values=", ".join(value for _, value in DELIVERY_COLUMNS),
    )
    if throttled:
        insert += _PROGRESS_THROTTLE.format(deliveries=deliveries, progress=JOB_PROGRESS)
    return f"outbox_d AS ({insert} RETURNING 1), outbox_n AS ({_WAKE_POOL})"


def is_throttled(event_type: str) -> bool:
    return event_type == JOB_PROGRESS


def delivery_params(*, event_type: str, at: datetime) -> dict[str, Any]:
    """The parameters of ``delivery_statement`` for an event of ``event_type`` at ``at``."""
    params: dict[str, Any] = {"outbox_event": event_type, "outbox_at": at}
    if is_throttled(event_type):
        params["outbox_since"] = at - PROGRESS_EVERY
    return params


def job_snapshot(job_id: Any) -> dict[str, Any]:
    """The job's row as a delivery's snapshot records it (the same ``to_jsonb`` as the outbox)."""
    table = connections["default"].ops.quote_name(Job._meta.db_table)
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT to_jsonb(t) FROM {table} t WHERE t.id = %s", [job_id])
        row = cursor.fetchone()
    if row is None:
        raise Job.DoesNotExist(job_id)
    # Django reads jsonb as text and leaves decoding to the field.
    snapshot: dict[str, Any] = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return snapshot


def job_from_snapshot(snapshot: dict[str, Any]) -> Job:
    """The job as a delivery's snapshot (the row as JSON) recorded it."""
    values: dict[str, Any] = {}
    for field in Job._meta.concrete_fields:
        if field.column in snapshot:
            raw = snapshot[field.column]
            values[field.attname] = (
                raw if field.get_internal_type() == "JSONField" else (field.to_python(raw))
            )
    return Job(**values)
