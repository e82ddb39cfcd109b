"""The job store: every write of a job's row, each one SQL statement with its JobEvent.

Three statements, each its own transaction when none is open (one round trip, one durable
commit per submission and per transition, which is what lets a web process and a worker keep
up):

- ``insert_jobs``: the jobs, their creation events and the pools' wake-up (``pg_notify``,
  delivered at commit), for one job or a thousand;
- ``change_job``: a conditional ``UPDATE … WHERE <expected state> RETURNING`` whose result
  decides a race (no row: someone else changed the job first), with its JobEvent and, when the
  job subscribes to the change, its webhook delivery written by the same statement
  (data-modifying CTEs). The delivery's SQL is the outbox's (apps/webhooks/outbox.py), which
  the webhooks app registers with ``use_outbox`` at start-up: jobs import nothing from webhooks;
- ``change_due_jobs``: the same for every job of a status that has come due, a batch at a time.

The store decides nothing: which change to make is the services' policy (apps/jobs/services.py).
It guards what every change must respect: a status change writes an event, and each event is of
a declared ``EventKind`` whose (from, to) statuses it matches (``TRANSITIONS``). Only the
services call the store (tests/jobs/test_store.py checks both).

SQL is built once per shape of change from the model's fields and cached: identifiers come from
the model, every value is a named parameter (``%(where_status)s``, ``%(set_error)s``, …); a call
only adapts values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any, Protocol, TypedDict
from uuid import UUID

import orjson
from django.db import connections, models, transaction
from django.db.models.sql import Query
from psycopg.types.json import Jsonb

from apps.clients.models import ApiClient
from apps.jobs.dispatch import CHANNEL, notify_payload, publish_on_commit, uses_relay
from apps.jobs.models import Job, JobEvent, JobStatus, RateWindow, RunningCount

__all__ = [
    "TRANSITIONS",
    "Change",
    "Event",
    "EventKind",
    "JobChanges",
    "JobMatch",
    "cancel_dependents",
    "change_due_jobs",
    "change_job",
    "change_jobs",
    "claim_next_jobs",
    "ensure_client_count",
    "insert_jobs",
    "link_dependencies",
    "lock_jobs",
    "release_dependents",
    "succeed_jobs",
    "use_outbox",
]

BATCH_ROWS = 1000  # rows per INSERT statement (a whole batch)
CLAIM_TRIES = 5  # picks per claim when concurrent claims keep taking the picked job's slot


class EventKind(StrEnum):
    """What a JobEvent records. Each kind is produced by the services named beside it."""

    CREATED = "created"  # job_submit, job_submit_batch
    CLAIMED = "claimed"  # job_claim_next, jobs_record_and_claim, job_start
    RELEASED = "released"  # jobs_record_and_claim (claimed jobs a worker gives back unstarted)
    SUCCEEDED = "succeeded"  # job_succeed
    ATTEMPT_FAILED = "attempt_failed"  # job_fail, jobs_recover_stale
    CANCELED = "canceled"  # job_cancel (a waiting job)
    CANCEL_REQUESTED = "cancel_requested"  # job_cancel (a running job)
    CANCEL_HONOURED = "cancel_honoured"  # job_finish_canceled
    RETRIED = "retried"  # job_retry
    PROMOTED = "promoted"  # jobs_promote_due


_Q, _S, _RUN, _RETRY = JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.RETRYING
_OK, _FAIL, _CANCEL = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED

# The (from status, to status) pairs each kind of event may record; "" is "no job yet".
TRANSITIONS: dict[EventKind, frozenset[tuple[str, str]]] = {
    EventKind.CREATED: frozenset({("", _Q), ("", _S)}),
    EventKind.CLAIMED: frozenset({(_Q, _RUN)}),
    EventKind.RELEASED: frozenset({(_RUN, _Q)}),
    EventKind.SUCCEEDED: frozenset({(_RUN, _OK)}),
    # A failed attempt is retried (now or after its backoff), fails the job, or ends a job whose
    # cancel was requested meanwhile.
    EventKind.ATTEMPT_FAILED: frozenset({(_RUN, to) for to in (_Q, _RETRY, _FAIL, _CANCEL)}),
    EventKind.CANCELED: frozenset({(_Q, _CANCEL), (_S, _CANCEL), (_RETRY, _CANCEL)}),
    EventKind.CANCEL_REQUESTED: frozenset({(_RUN, _RUN)}),
    EventKind.CANCEL_HONOURED: frozenset({(_RUN, _CANCEL)}),
    EventKind.RETRIED: frozenset({(_FAIL, _Q), (_CANCEL, _Q)}),
    EventKind.PROMOTED: frozenset({(_S, _Q), (_RETRY, _Q)}),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """The JobEvent a change writes. Its from-status is the status the change expects; its
    to-status and attempt are the changed row's."""

    kind: EventKind
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)


class JobMatch(TypedDict, total=False):
    """What the row must hold for a change to apply (each an equality)."""

    id: UUID
    status: str
    attempts: int
    cancel_requested: bool
    held: bool
    pending_dependencies: int


class JobChanges(TypedDict, total=False):
    """The new values of a change."""

    status: str
    attempts: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: dict[str, Any] | None
    run_at: datetime | None
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    worker: str
    task_id: str
    pending_dependencies: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """One change of one job, for ``change_jobs`` (the arguments of ``change_job`` without a
    claim)."""

    where: JobMatch
    changes: JobChanges
    event: Event | None
    count_attempt: bool = False
    bump_version: bool = True
    webhook_event: str | None = None
    at: datetime | None = None


class Outbox(Protocol):
    """What the store needs of the webhook outbox (apps/webhooks/outbox.py)."""

    def delivery_statement(self, *, throttled: bool) -> str: ...

    def delivery_params(self, *, event_type: str, at: datetime) -> dict[str, Any]: ...

    def is_throttled(self, event_type: str) -> bool: ...


_outbox: list[Outbox] = []


def use_outbox(outbox: Outbox) -> None:
    """Write webhook deliveries with ``outbox``'s SQL (the webhooks app, at start-up)."""
    _outbox[:] = [outbox]
    _update_statement.cache_clear()
    _succeed_statement.cache_clear()
    _cancel_statement.cache_clear()


def _the_outbox() -> Outbox:
    if not _outbox:
        raise RuntimeError("no webhook outbox registered (apps.webhooks is not installed)")
    return _outbox[0]


class InvalidTransition(ValueError):
    """A change that would write an event its kind does not declare (a bug in a service)."""


# --- Named SQL --------------------------------------------------------------------------------
# Identifiers ({table}, {columns}, …) are formatted in from the models once; values are always
# named parameters.

# The claim (``next_in_queue``): the next job of a queue, fair between clients and within their
# limits, in one statement. Cost: one skip-scan step of job_claimable_by_client per client
# with jobs waiting in the queue (never per job), the running jobs of the queue from
# job_running (at most its workers), then one probe for the chosen job. Steps:
# - ``w``: the clients with jobs waiting in the queue, a loose index scan of
#   job_claimable_by_client, whose first entry per client is also its best job;
# - ``r``: how many of each client's jobs run in the queue;
# - ``cand``: the active ones under their cap (max_running_jobs against their client-wide
#   RunningCount row), furthest below their weighted share first, (running + 1) / weight; ties
#   go to the client whose best job comes first (higher priority, then older);
# - ``pick``: the first candidate's best job (highest priority, then oldest) whose concurrency
#   key is not full, FOR UPDATE SKIP LOCKED; a client whose jobs are all locked or blocked
#   passes its turn to the next candidate (a nested loop that stops at the first row);
# - ``ks``/``cs``: the job's key row and (when its client has a cap) its client-wide row, locked
#   and re-checked on their latest version: exact under concurrent claims;
# - ``ok``: the job, when every slot it needs is free; ``bump`` takes them.
# The jobs of an inactive client are held (out of job_claimable_by_client); the join on
# is_active covers those queued in the moment between a deactivation and their hold
# (apps/jobs/holds.py).
CLAIM_CTES = (
    # Each step reads the next client's first entry of job_claimable_by_client, which is also
    # that client's best job (the index is ordered by client, then -priority, id).
    'w AS ((SELECT j."client_id", j."priority", j."id" FROM {table} j '
    'WHERE j."status" = \'queued\' AND NOT j."held" AND j."pending_dependencies" = 0 '
    'AND j."queue" = %(queue)s '
    'ORDER BY j."client_id", j."priority" DESC, j."id" LIMIT 1) '
    'UNION ALL SELECT n."client_id", n."priority", n."id" FROM w CROSS JOIN LATERAL '
    '(SELECT j."client_id", j."priority", j."id" FROM {table} j '
    'WHERE j."status" = \'queued\' AND NOT j."held" AND j."pending_dependencies" = 0 '
    'AND j."queue" = %(queue)s '
    'AND j."client_id" > w."client_id" '
    'ORDER BY j."client_id", j."priority" DESC, j."id" LIMIT 1) n), '
    'r AS (SELECT j."client_id", count(*) AS n FROM {table} j WHERE j."status" = \'running\' '
    'AND j."queue" = %(queue)s GROUP BY j."client_id"), '
    'cand AS (SELECT w."client_id", c."max_running_jobs" AS cap FROM w '
    'JOIN {clients} c ON c."id" = w."client_id" AND c."is_active" '
    'LEFT JOIN r ON r."client_id" = w."client_id" '
    'LEFT JOIN {counts} rc ON rc."client_id" = w."client_id" AND rc."key" = \'\' '
    'WHERE c."max_running_jobs" IS NULL OR coalesce(rc."running", 0) < c."max_running_jobs" '
    'ORDER BY (coalesce(r.n, 0) + 1)::float8 / greatest(c."weight", 1), '
    'w."priority" DESC, w."id"), '
    'pick AS (SELECT p."id", p."client_id", p."concurrency_key", p."concurrency_limit", '
    'p."type", cand.cap FROM cand CROSS JOIN LATERAL (SELECT j."id", j."client_id", '
    'j."concurrency_key", j."concurrency_limit", j."type" FROM {table} j '
    'WHERE j."status" = \'queued\' AND NOT j."held" AND j."pending_dependencies" = 0 '
    'AND j."queue" = %(queue)s '
    'AND j."client_id" = cand."client_id" AND (j."concurrency_key" IS NULL OR NOT EXISTS '
    '(SELECT 1 FROM {counts} k WHERE k."client_id" = j."client_id" '
    'AND k."key" = j."concurrency_key" AND k."running" >= j."concurrency_limit")) '
    'AND NOT EXISTS (SELECT 1 FROM {windows} rw WHERE rw."job_type" = j."type" '
    'AND rw."starts" >= (%(rates)s::jsonb -> j."type" ->> 0)::int '
    'AND rw."window_start" > clock_timestamp() '
    '- make_interval(secs => (%(rates)s::jsonb -> j."type" ->> 1)::float8)) '
    'ORDER BY j."priority" DESC, j."id" LIMIT 1 FOR UPDATE SKIP LOCKED) p LIMIT 1), '
    'ks AS (SELECT k."id" FROM {counts} k JOIN pick p ON k."client_id" = p."client_id" '
    'AND k."key" = p."concurrency_key" WHERE k."running" < p."concurrency_limit" '
    "FOR UPDATE OF k), "
    'cs AS (SELECT k."id" FROM {counts} k JOIN pick p ON k."client_id" = p."client_id" '
    'AND k."key" = \'\' WHERE p.cap IS NOT NULL AND k."running" < p.cap FOR UPDATE OF k), '
    # The job type's rate window, when the type is rate limited: open (under its count) or over.
    'rs AS (SELECT rw."id", (rw."window_start" IS NULL OR rw."window_start" <= '
    'clock_timestamp() - make_interval(secs => (%(rates)s::jsonb -> p."type" ->> 1)::float8)) '
    'AS fresh FROM {windows} rw JOIN pick p ON rw."job_type" = p."type" '
    'WHERE %(rates)s::jsonb ? p."type" AND (rw."window_start" IS NULL '
    'OR rw."window_start" <= clock_timestamp() '
    '- make_interval(secs => (%(rates)s::jsonb -> p."type" ->> 1)::float8) '
    'OR rw."starts" < (%(rates)s::jsonb -> p."type" ->> 0)::int) FOR UPDATE OF rw), '
    'ok AS (SELECT p."id", p.cap IS NOT NULL AS client_slot, '
    'p."concurrency_key" IS NOT NULL AS key_slot FROM pick p '
    'WHERE (p."concurrency_key" IS NULL OR EXISTS (SELECT 1 FROM ks)) '
    "AND (p.cap IS NULL OR EXISTS (SELECT 1 FROM cs)) "
    'AND (NOT (%(rates)s::jsonb ? p."type") OR EXISTS (SELECT 1 FROM rs))), '
    'rbump AS (UPDATE {windows} rw SET "window_start" = CASE WHEN rs.fresh '
    'THEN clock_timestamp() ELSE rw."window_start" END, '
    '"starts" = CASE WHEN rs.fresh THEN 1 ELSE rw."starts" + 1 END FROM rs '
    'WHERE rw."id" = rs."id" AND EXISTS (SELECT 1 FROM ok)), '
    'bump AS (UPDATE {counts} SET "running" = "running" + 1 WHERE "id" IN '
    '(SELECT "id" FROM ks UNION ALL SELECT "id" FROM cs) AND EXISTS (SELECT 1 FROM ok))'
)
SELECT_NEXT_QUEUED = '"id" = (SELECT "id" FROM ok)'
# The claim's choice alone, as a query (to read its plan).
NEXT_QUEUED = "WITH RECURSIVE " + CLAIM_CTES + ' SELECT "id" FROM ok'
CLAIM_SLOTS = '"client_slot" = (SELECT client_slot FROM ok), "key_slot" = (SELECT key_slot FROM ok)'
# A change that ends a run gives back the RunningCount slots its claim took.
RELEASE_SLOTS = (
    'released AS (UPDATE {counts} k SET "running" = k."running" - 1 FROM t '
    'WHERE k."client_id" = t."client_id" AND ((t."key_slot" AND k."key" = t."concurrency_key") '
    'OR (t."client_slot" AND k."key" = \'\')))'
)
# The same for many runs ended by one statement: a RunningCount row shared by several of them
# goes down by their number (an UPDATE … FROM changes each row once, whatever the matches).
# The RunningCount rows are locked in id order first, as the jobs are: two workers ending runs
# of the same clients lock their rows in one order.
RELEASE_MANY_SLOTS = (
    'rn AS (SELECT t."client_id", s.key, count(*) AS n FROM t CROSS JOIN LATERAL '
    '(SELECT t."concurrency_key" WHERE t."key_slot" UNION ALL SELECT \'\' WHERE t."client_slot") '
    "s(key) GROUP BY 1, 2), "
    'rk AS (SELECT k."id", rn.n FROM {counts} k JOIN rn ON k."client_id" = rn."client_id" '
    'AND k."key" = rn.key ORDER BY k."id" FOR UPDATE OF k), '
    'released AS (UPDATE {counts} k SET "running" = k."running" - rk.n FROM rk '
    'WHERE k."id" = rk."id")'
)
# Many running attempts succeed in one statement (``succeed_jobs``): each row of the jsonb
# parameter names a job, the attempt it must still be in, its result and its finish time.
SUCCEED_MANY = (
    'WITH v AS (SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS v("id" uuid, '
    '"attempts" int, "result" jsonb, "finished" timestamptz)), '
    # The rows locked in id order first (LOCK_IN_ID_ORDER): the UPDATE's join would take them
    # in whatever order its plan meets them.
    'lk AS (SELECT j."id" FROM {table} j WHERE j."id" IN (SELECT "id" FROM v) '
    'ORDER BY j."id" FOR UPDATE OF j), '
    't AS (UPDATE {table} j SET "status" = \'succeeded\', "result" = v."result", "error" = NULL, '
    '"finished_at" = v."finished", "heartbeat_at" = NULL, "version" = j."version" + 1 FROM v '
    'WHERE j."id" = v."id" AND j."id" IN (SELECT "id" FROM lk) AND j."status" = \'running\' '
    'AND j."attempts" = v."attempts" RETURNING {returning}), '
    "e AS (INSERT INTO {events} (job_id, from_status, to_status, attempt, at, details) "
    'SELECT "id", \'running\', "status", "attempts", "finished_at", \'{{}}\'::jsonb FROM t), '
    "{release}, {outbox} "
    "SELECT {columns}, (SELECT count(*) FROM outbox_n) FROM t"
)
# Jobs of a status whose run_at has come, oldest first, skipping rows others are changing.
# "= ANY(ARRAY(…))" runs the subquery once ("IN (…)" may be planned as a join that re-runs it).
SELECT_DUE = (
    '"id" = ANY(ARRAY(SELECT "id" FROM {table} WHERE "status" = %(where_status)s '
    'AND "run_at" <= %(due_by)s ORDER BY "run_at" LIMIT %(limit)s FOR UPDATE SKIP LOCKED))'
)
# The event of each row the change returned (``t``).
INSERT_EVENTS = (
    "e AS (INSERT INTO {events} (job_id, from_status, to_status, attempt, at, details) "
    'SELECT "id", %(event_from)s, "status", "attempts", %(event_at)s, %(event_details)s FROM t)'
)
# The jobs are one jsonb parameter (an array of rows, serialised by orjson in one C call) that
# jsonb_populate_recordset turns back into rows of the table's own column types: the text is the
# same whatever the number of rows. A 1000-row VALUES list of 29 000 placeholders cost more CPU
# for the driver to convert and adapt than everything else about the batch; even for a single
# job, binding its 34 columns one by one cost the web process more (psycopg's conversion and
# adaptation of each value, ~0.2-0.3 ms) than the whole JSON document (docs/benchmarks.md).
INSERT_MANY_JOBS = (
    "INSERT INTO {table} ({columns}) "
    "SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %(rows)s::jsonb)"
)
# The jobs, their creation events, and (when there are queued jobs) the wake-up notification
# that PostgreSQL delivers to the relay on commit.
INSERT_JOBS = (
    'WITH j AS ({insert} RETURNING "id", "status", "created_at", "client_id", '
    '"concurrency_key", "type"), '
    "e AS (INSERT INTO {events} (job_id, from_status, to_status, attempt, at, details) "
    'SELECT "id", \'\', "status", 0, "created_at", \'{{}}\'::jsonb FROM j), '
    # The RunningCount rows the claim will lock: the client's, and each concurrency key's.
    'c AS (INSERT INTO {counts} ("client_id", "key", "running") SELECT DISTINCT "client_id", '
    "k, 0 FROM j CROSS JOIN LATERAL (VALUES (''), (\"concurrency_key\")) v(k) "
    "WHERE k IS NOT NULL ON CONFLICT DO NOTHING), "
    # The rate window rows of the rate-limited types among them.
    'r AS (INSERT INTO {windows} ("job_type", "starts") SELECT DISTINCT "type", 0 FROM j '
    'WHERE "type" = ANY(%(rate_limited)s) ON CONFLICT DO NOTHING) '
    "SELECT pg_notify(%(channel)s, %(wakeups)s) WHERE %(notify)s"
)
# A transaction may choose not to wait for its WAL flush (see change_job's async_commit).
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


@cache
def _fields() -> tuple[Any, ...]:
    return tuple(Job._meta.concrete_fields)


@cache
def _field(name: str) -> Any:
    return Job._meta.get_field(name)


@cache
def _details_field() -> Any:
    return JobEvent._meta.get_field("details")


def _quote(name: str) -> str:
    return str(connections["default"].ops.quote_name(name))


@cache
def _names() -> dict[str, str]:
    return {
        "table": _quote(Job._meta.db_table),
        "events": _quote(JobEvent._meta.db_table),
        "clients": _quote(ApiClient._meta.db_table),
        "counts": _quote(RunningCount._meta.db_table),
        "windows": _quote(RateWindow._meta.db_table),
        "columns": ", ".join(_quote(str(f.column)) for f in _fields()),
    }


@cache
def _update_statement(
    *,
    selector: str,
    where: tuple[str, ...],
    sets: tuple[str, ...],
    count_attempt: bool,
    bump_version: bool,
    event: bool,
    webhook: bool,
    throttled: bool,
    async_commit: bool,
    release: bool = False,
) -> str:
    """The statement for one shape of change. ``selector`` is "id" (the job named in
    ``where``), "next_in_queue" or "due". ``release`` gives back the slots of a run it ends."""
    names = _names()
    column = {name: _quote(str(_field(name).column)) for name in (*where, *sets)}
    assignments = [f"{column[name]} = %(set_{name})s" for name in sets]
    if count_attempt:
        assignments.append('"attempts" = "attempts" + 1')
    if bump_version:
        assignments.append('"version" = "version" + 1')
    conditions = [f"{column[name]} = %(where_{name})s" for name in where]
    ctes = []
    if selector == "next_in_queue":
        ctes.append(CLAIM_CTES.format(**names))
        assignments.append(CLAIM_SLOTS)
        if "started_at" in sets:
            # Never before the slots were taken: a run's [started_at, finished_at] lies within
            # its hold of them, so the jobs' own times show the limits were kept.
            index = sets.index("started_at")
            assignments[index] = (
                f"{column['started_at']} = greatest(%(set_started_at)s, clock_timestamp())"
            )
        conditions.append(SELECT_NEXT_QUEUED)
    elif selector == "due":
        conditions.append(SELECT_DUE.format(**names))
    update = (
        f"UPDATE {names['table']} SET {', '.join(assignments)} "
        f"WHERE {' AND '.join(conditions)} RETURNING {names['columns']}"
    )
    ctes.append(f"t AS ({update})")
    tail = ""
    if event:
        ctes.append(INSERT_EVENTS.format(**names))
    if release:
        ctes.append(RELEASE_SLOTS.format(**names))
    if webhook:
        ctes.append(_the_outbox().delivery_statement(throttled=throttled))
        tail += ", (SELECT count(*) FROM outbox_n)"
    if async_commit:
        tail += f", {ASYNC_COMMIT}"
    if selector == "next_in_queue":
        # One row even when nothing was claimed: whether a job was picked, so that a pick that
        # lost its slot to a concurrent claim (ks/cs re-checked full) is told from an empty queue.
        return (
            f"WITH RECURSIVE {', '.join(ctes)} SELECT {names['columns']}{tail}, "
            "(SELECT count(*) FROM pick) FROM (SELECT 1) AS one LEFT JOIN t ON true"
        )
    return f"WITH {', '.join(ctes)} SELECT {names['columns']}{tail} FROM t"


def _check(event: Event | None, where: JobMatch, changes: JobChanges) -> None:
    if event is None:
        if "status" in changes:
            raise InvalidTransition("a status change writes an event")
        return
    before = where.get("status")
    if before is None:
        raise InvalidTransition("an event's change names the status it expects")
    after = changes.get("status", before)
    if (before, after) not in TRANSITIONS[event.kind]:
        raise InvalidTransition(f"{event.kind} does not go from {before!r} to {after!r}")


def _params(
    connection: Any, where: JobMatch, changes: JobChanges, event: Event | None
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in where.items():
        params[f"where_{name}"] = _field(name).get_db_prep_save(value, connection)
    for name, value in changes.items():
        params[f"set_{name}"] = _field(name).get_db_prep_save(value, connection)
    if event is not None:
        params["event_from"] = where["status"]
        params["event_at"] = event.at
        params["event_details"] = _details_field().get_db_prep_save(event.details, connection)
    return params


def _prepared(
    change: Change, connection: Any, *, claim: bool = False, async_commit: bool = False
) -> tuple[str, dict[str, Any]]:
    """The statement and parameters of one change (``claim``: of the next claimable job)."""
    where, changes, event, webhook_event = (
        change.where,
        change.changes,
        change.event,
        change.webhook_event,
    )
    _check(event, where, changes)
    statement = _update_statement(
        selector="next_in_queue" if claim else "id",
        where=tuple(where),
        sets=tuple(changes),
        count_attempt=change.count_attempt,
        bump_version=change.bump_version,
        event=event is not None,
        webhook=webhook_event is not None,
        throttled=webhook_event is not None and _the_outbox().is_throttled(webhook_event),
        async_commit=async_commit,
        release=where.get("status") == JobStatus.RUNNING
        and changes.get("status", JobStatus.RUNNING) != JobStatus.RUNNING,
    )
    params = _params(connection, where, changes, event)
    if webhook_event is not None:
        when = change.at or (event.at if event is not None else None)
        if when is None:
            raise ValueError("a webhook event needs its time")
        params.update(_the_outbox().delivery_params(event_type=webhook_event, at=when))
    return statement, params


def change_job(
    *,
    where: JobMatch,
    changes: JobChanges,
    event: Event | None,
    count_attempt: bool = False,
    next_in_queue: str | None = None,
    bump_version: bool = True,
    webhook_event: str | None = None,
    async_commit: bool = False,
    at: datetime | None = None,
    rates: dict[str, tuple[int, int]] | None = None,
) -> Job | None:
    """Apply ``changes`` to the job matching ``where``; return the job as changed, or None when
    no job matched (someone else changed it first).

    ``event`` is the JobEvent the change writes (required for a status change).
    ``count_attempt`` adds one to ``attempts``. ``next_in_queue`` adds "and it is the next
    claimable job of this queue" (highest priority, then oldest, skipping rows other workers
    hold, within its client's cap, its key's limit and its type's ``rates``: name → (starts,
    period seconds)). ``webhook_event`` writes the webhook delivery of that event type when the job
    subscribes to it, stamped ``at`` (default: the event's time). ``async_commit`` lets a
    standalone change skip waiting for its WAL flush: only for a change whose loss in a
    database crash is repaired anyway (a lost claim puts the job back in the queue).
    """
    change = Change(
        where=where,
        changes=changes,
        event=event,
        count_attempt=count_attempt,
        bump_version=bump_version,
        webhook_event=webhook_event,
        at=at,
    )
    if next_in_queue is not None:
        claimed = claim_next_jobs(
            queue=next_in_queue, count=1, change=change, rates=rates, async_commit=async_commit
        )
        return claimed[0] if claimed else None
    connection = connections["default"]
    statement, params = _prepared(change, connection, async_commit=async_commit)
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        jobs = _to_jobs(cursor.fetchall())
    return jobs[0] if jobs else None


def _pipelined(connection: Any, statement: str, params: Sequence[dict[str, Any]]) -> list[Any]:
    """Each parameter set's rows, the statements sent together (psycopg's pipeline mode: one
    round trip for all of them) and run one after the other, each seeing the ones before."""
    if len(params) == 1:
        with connection.cursor() as cursor:
            cursor.execute(statement, params[0])
            return [cursor.fetchall()]
    results = []
    with connection.cursor() as cursor:
        raw = cursor.cursor  # Django's wrapper has no ``returning``
        raw.executemany(statement, params, returning=True)
        while True:
            results.append(raw.fetchall())
            if not raw.nextset():
                break
    return results


def change_jobs(changes: Sequence[Change]) -> list[Job | None]:
    """Apply several changes, each exactly as ``change_job`` would (its event, webhook delivery
    and released slots in its own statement), in one round trip per shape of change. Returns,
    for each change in order, the job as changed or None. Several statements: call it inside a
    transaction to make them one commit."""
    connection = connections["default"]
    shapes: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, change in enumerate(changes):
        statement, params = _prepared(change, connection)
        shapes.setdefault(statement, []).append((index, params))
    found: list[Job | None] = [None] * len(changes)
    for statement, items in shapes.items():
        results = _pipelined(connection, statement, [params for _, params in items])
        for (index, _), rows in zip(items, results, strict=True):
            jobs = _to_jobs(rows)
            found[index] = jobs[0] if jobs else None
    return found


def claim_next_jobs(
    *,
    queue: str,
    count: int,
    change: Change,
    rates: dict[str, tuple[int, int]] | None = None,
    async_commit: bool = False,
) -> list[Job]:
    """Apply ``change`` to the next ``count`` claimable jobs of ``queue`` (see ``change_job``'s
    ``next_in_queue``): the claim statement ``count`` times, sent together and run one after the
    other, so that each chooses knowing the ones before (fair share, caps, keys and rate windows
    exactly as ``count`` single claims would). Fewer when fewer are claimable. Several
    statements: call it inside a transaction to make them one commit."""
    connection = connections["default"]
    statement, params = _prepared(change, connection, claim=True, async_commit=async_commit)
    params["queue"] = queue
    params["rates"] = Jsonb({name: list(rate) for name, rate in (rates or {}).items()})
    claimed: list[Job] = []
    for _ in range(CLAIM_TRIES):
        results = _pipelined(connection, statement, [params] * (count - len(claimed)))
        lost_slot = False
        for rows in results:
            if rows[0][0] is None:
                # No job: an empty queue, or a pick whose slot a concurrent claim took.
                lost_slot = lost_slot or bool(rows[0][-1])
                continue
            claimed.extend(_to_jobs(rows))
        if claimed or not lost_slot:
            break  # pick again only when nothing was claimed because of lost slots
    return claimed


@cache
def _succeed_statement() -> str:
    names = _names()
    return SUCCEED_MANY.format(
        returning=", ".join(f"j.{_quote(str(f.column))}" for f in _fields()),
        release=RELEASE_MANY_SLOTS.format(**names),
        outbox=_the_outbox().delivery_statement(throttled=False),
        **names,
    )


def succeed_jobs(
    succeeded: Sequence[tuple[Job, dict[str, Any], datetime]], *, webhook_event: str, at: datetime
) -> dict[Any, Job]:
    """Record the success of several running attempts in one statement: for each (job as
    claimed, result, finish time), the job ``succeeded`` if it is still ``running`` in that
    attempt, with its event, its released slots and (when it subscribes) its ``webhook_event``
    delivery stamped ``at``. Returns the changed jobs by id (an attempt that lost its job is
    not among them)."""
    _check(Event(kind=EventKind.SUCCEEDED, at=at), {"status": _RUN}, {"status": _OK})
    if not succeeded:
        return {}
    encoder = _field("result").encoder().default
    rows = [
        {
            "id": job.pk,
            "attempts": job.attempts,
            "result": orjson.Fragment(_encode(result, encoder)),
            "finished": finished,
        }
        for job, result, finished in succeeded
    ]
    params: dict[str, Any] = {"rows": Jsonb(orjson.dumps(rows), dumps=_as_is)}
    params.update(_the_outbox().delivery_params(event_type=webhook_event, at=at))
    with connections["default"].cursor() as cursor:
        cursor.execute(_succeed_statement(), params)
        return {job.pk: job for job in _to_jobs(cursor.fetchall())}


def change_due_jobs(
    *, status: str, due_by: datetime, limit: int, changes: JobChanges, event: Event
) -> list[Job]:
    """Apply ``changes`` to up to ``limit`` jobs of ``status`` whose ``run_at`` is at or before
    ``due_by`` (oldest first; rows being changed by others are skipped), each with its event.
    Returns the jobs as changed."""
    where: JobMatch = {"status": status}
    _check(event, where, changes)
    connection = connections["default"]
    statement = _update_statement(
        selector="due",
        where=tuple(where),
        sets=tuple(changes),
        count_attempt=False,
        bump_version=True,
        event=True,
        webhook=False,
        throttled=False,
        async_commit=False,
    )
    params = _params(connection, where, changes, event)
    params.update(due_by=due_by, limit=limit)
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return _to_jobs(cursor.fetchall())


@cache
def _converters() -> tuple[Any, Any]:
    connection = connections["default"]
    compiler = connection.ops.compiler("SQLCompiler")(Query(Job), connection, "default")
    converters = compiler.get_converters([f.get_col(Job._meta.db_table) for f in _fields()])
    return compiler, converters


def _to_jobs(rows: Sequence[Sequence[Any]]) -> list[Job]:
    if not rows:
        return []
    compiler, converters = _converters()
    width = len(_fields())
    rows = [row[:width] for row in rows]
    if converters:
        rows = list(compiler.apply_converters(rows, converters))
    names = [f.attname for f in _fields()]
    return [Job.from_db("default", names, row) for row in rows]


# --- Inserting jobs ---------------------------------------------------------------------------


@cache
def _insert_statement() -> str:
    names = _names()
    insert = INSERT_MANY_JOBS.format(**names)
    return INSERT_JOBS.format(
        insert=insert, events=names["events"], counts=names["counts"], windows=names["windows"]
    )


def insert_jobs(jobs: Sequence[Job], *, rate_limited: Sequence[str] = ()) -> None:
    """INSERT ``jobs`` (built in memory, ids set, each ``queued`` or ``scheduled``) with one
    creation event each, and wake the pools of the queued ones once the transaction commits.
    One statement per ``BATCH_ROWS`` jobs: outside a transaction, a batch of up to that many is
    its own transaction. ``rate_limited``: the rate-limited job types, whose window rows the
    statement creates for the claim to lock."""
    creatable = TRANSITIONS[EventKind.CREATED]
    for job in jobs:
        if ("", job.status) not in creatable:
            raise InvalidTransition(f"a job is not created {job.status!r}")
    relay = uses_relay()
    # More than one statement: all of them or none.
    with transaction.atomic() if len(jobs) > BATCH_ROWS else nullcontext():
        _insert_chunks(jobs, connections["default"], relay, list(rate_limited))
    if not relay:
        publish_on_commit(
            [j for j in jobs if j.status == JobStatus.QUEUED and not j.pending_dependencies]
        )


def _insert_chunks(
    jobs: Sequence[Job], connection: Any, relay: bool, rate_limited: list[str]
) -> None:
    for start in range(0, len(jobs), BATCH_ROWS):
        chunk = jobs[start : start + BATCH_ROWS]
        queued = Counter(
            job.queue
            for job in chunk
            if job.status == JobStatus.QUEUED and not job.pending_dependencies
        )
        params = {
            "rows": Jsonb(_rows_json(chunk), dumps=_as_is),
            "channel": CHANNEL,
            "wakeups": notify_payload(queued),
            "notify": bool(queued) and relay,
            "rate_limited": rate_limited,
        }
        with connection.cursor() as cursor:
            cursor.execute(_insert_statement(), params)
        for job in chunk:
            job._state.adding = False
            job._state.db = "default"


def _as_is(data: bytes) -> bytes:
    return data


@cache
def _row_columns() -> list[tuple[str, str, Any]]:
    """(column, attribute, JSON encoder's ``default`` or None for a plain column)."""
    columns = []
    for f in _fields():
        default = None
        if isinstance(f, models.JSONField):
            default = f.encoder().default if f.encoder is not None else _not_json
        columns.append((str(f.column), f.attname, default))
    return columns


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(value: Any, default: Any) -> bytes:
    return orjson.dumps(value, default=default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def _rows_json(jobs: Sequence[Job]) -> bytes:
    """The jobs as a JSON array of {column: value}. A JSON column's value is encoded as Django
    would store it (its field's encoder decides what plain JSON cannot say, datetimes included),
    and embedded as is; other columns are numbers, strings, UUIDs and datetimes (RFC 3339 with
    microseconds), which PostgreSQL reads back into the column's type exactly."""
    columns = _row_columns()
    rows = []
    for job in jobs:
        row: dict[str, Any] = {}
        for column, attname, default in columns:
            value = getattr(job, attname)
            if default is not None and value is not None:
                value = orjson.Fragment(_encode(value, default))
            row[column] = value
        rows.append(row)
    return orjson.dumps(rows)


def ensure_client_count(client_id: int) -> None:
    """Create the client's client-wide RunningCount row, which the claim locks when the client
    has a cap (a submission creates it too; this covers a cap set before any)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f'INSERT INTO {_names()["counts"]} ("client_id", "key", "running") '
            "VALUES (%(client)s, '', 0) ON CONFLICT DO NOTHING",
            {"client": client_id},
        )


# --- Dependencies (workflows) -----------------------------------------------------------------
# How they are stored, released and canceled: docs/architecture.md, "Dependencies".

# A dependent still waiting for its dependencies: found by job_waiting_dependents, a GIN index
# of depends_on over those rows alone (pending_dependencies > 0), however long the queues.
WAITING_DEPENDENT = "j.\"pending_dependencies\" > 0 AND j.\"status\" IN ('queued', 'scheduled')"
# The submission marks its dependencies (``has_dependents``) under their row locks and reads
# their status as the lock leaves it: a dependency that ends concurrently either ended before
# (its status is read here) or waits for this transaction, and then sees the mark on the
# row it updates, and settles the new dependents in a later statement of its transaction.
LINK_DEPENDENCIES = (
    'WITH lk AS (SELECT j."id" FROM {table} j WHERE j."id" = ANY(%(ids)s::uuid[]) '
    'AND j."client_id" = %(client)s ORDER BY j."id" FOR UPDATE OF j) '
    'UPDATE {table} j SET "has_dependents" = true WHERE j."id" IN (SELECT "id" FROM lk) '
    'RETURNING j."id", j."status"'
)
# The success of ``ids`` counted in each waiting dependent: the last one sets it claimable.
RELEASE_DEPENDENTS = (
    'WITH lk AS (SELECT j."id" FROM {table} j WHERE j."depends_on" && %(ids)s::uuid[] AND '
    + WAITING_DEPENDENT
    + ' ORDER BY j."id" FOR UPDATE OF j), '
    't AS (UPDATE {table} j SET "pending_dependencies" = j."pending_dependencies" '
    '- (SELECT count(*) FROM unnest(j."depends_on") d WHERE d = ANY(%(ids)s::uuid[])), '
    '"enqueued_at" = CASE WHEN j."status" = \'queued\' THEN %(at)s ELSE j."enqueued_at" END, '
    '"version" = j."version" + 1 '
    'WHERE j."id" IN (SELECT "id" FROM lk) AND j."depends_on" && %(ids)s::uuid[] AND '
    + WAITING_DEPENDENT
    + " RETURNING {returning}) "
    "SELECT {columns} FROM t"
)
# Every waiting job that depends on ``ids``, directly or through other waiting jobs, canceled
# (dependency_failed) in one statement, each with its event and webhook delivery.
CANCEL_DEPENDENTS = (
    'WITH RECURSIVE d("id", "status") AS ('
    'SELECT j."id", j."status" FROM {table} j '
    'WHERE j."depends_on" && %(ids)s::uuid[] AND ' + WAITING_DEPENDENT + " "
    'UNION SELECT j."id", j."status" FROM d JOIN {table} j '
    'ON j."depends_on" && ARRAY[d."id"] AND ' + WAITING_DEPENDENT + "), "
    'lk AS (SELECT j."id" FROM {table} j WHERE j."id" IN (SELECT "id" FROM d) '
    'ORDER BY j."id" FOR UPDATE OF j), '
    't AS (UPDATE {table} j SET "status" = \'canceled\', "error" = %(error)s::jsonb, '
    '"finished_at" = %(at)s, "version" = j."version" + 1 FROM d WHERE j."id" = d."id" '
    'AND j."id" IN (SELECT "id" FROM lk) AND ' + WAITING_DEPENDENT + " RETURNING {returning}), "
    "e AS (INSERT INTO {events} (job_id, from_status, to_status, attempt, at, details) "
    'SELECT DISTINCT ON (t."id") t."id", d."status", t."status", t."attempts", %(at)s, '
    '%(details)s::jsonb FROM t JOIN d ON d."id" = t."id"), '
    "{outbox} SELECT {columns}, (SELECT count(*) FROM outbox_n), "
    '(SELECT d."status" FROM d WHERE d."id" = t."id" LIMIT 1) FROM t'
)


def _returning() -> str:
    return ", ".join(f"j.{_quote(str(f.column))}" for f in _fields())


# Lock order. Every statement that locks several jobs rows takes them in id order (an
# ``ORDER BY id FOR UPDATE`` CTE before its UPDATE): the submission's link of its dependencies,
# the worker's successes, the release and cancel of dependents, and ``lock_jobs`` before a
# transaction's several single-row changes (bulk retry and cancel, a worker's failures and
# give-backs). Two such statements cannot wait on each other in a cycle; docs/architecture.md,
# "Lock order", says what is left (a transaction's later statements), and the worker retries a
# group that PostgreSQL aborted as a deadlock victim (workers/runtime.py).
LOCK_IN_ID_ORDER = (
    'SELECT j."id" FROM {table} j WHERE j."id" = ANY(%(ids)s::uuid[]) '
    'ORDER BY j."id" FOR UPDATE OF j'
)


def lock_jobs(ids: Sequence[Any]) -> None:
    """Lock the jobs ``ids`` until the transaction ends, in id order (``LOCK_IN_ID_ORDER``):
    before several statements that each change one of them."""
    if len(ids) < 2:
        return
    with connections["default"].cursor() as cursor:
        cursor.execute(LOCK_IN_ID_ORDER.format(**_names()), {"ids": sorted(set(ids))})


def link_dependencies(*, client_id: int, ids: Sequence[UUID]) -> dict[UUID, str]:
    """Mark the client's jobs among ``ids`` as having dependents, locking them until the
    transaction ends. Returns their statuses by id (another client's job is not among them)."""
    if not ids:
        return {}
    with connections["default"].cursor() as cursor:
        cursor.execute(
            LINK_DEPENDENCIES.format(**_names()), {"ids": list(ids), "client": client_id}
        )
        return dict(cursor.fetchall())


@cache
def _release_statement() -> str:
    return RELEASE_DEPENDENTS.format(returning=_returning(), **_names())


def release_dependents(ids: Sequence[UUID], *, at: datetime) -> list[Job]:
    """Count the success of the jobs ``ids`` in their waiting dependents. Returns the
    dependents as changed (those with no pending dependency left are claimable)."""
    if not ids:
        return []
    with connections["default"].cursor() as cursor:
        cursor.execute(_release_statement(), {"ids": list(ids), "at": at})
        return _to_jobs(cursor.fetchall())


@cache
def _cancel_statement() -> str:
    return CANCEL_DEPENDENTS.format(
        returning=_returning(), outbox=_the_outbox().delivery_statement(throttled=False), **_names()
    )


def cancel_dependents(
    ids: Sequence[UUID], *, at: datetime, error: dict[str, Any], webhook_event: str
) -> list[tuple[Job, str]]:
    """Cancel every waiting job that depends on ``ids``, transitively, in one statement: each
    ``canceled`` with ``error``, its event and (when it subscribes) its ``webhook_event``
    delivery. Returns the canceled jobs, each with its status before."""
    _check(Event(kind=EventKind.CANCELED, at=at), {"status": _Q}, {"status": _CANCEL})
    if not ids:
        return []
    connection = connections["default"]
    params: dict[str, Any] = {
        "ids": list(ids),
        "at": at,
        "error": Jsonb(error),
        "details": Jsonb({"reason": "dependency_failed"}),
    }
    params.update(_the_outbox().delivery_params(event_type=webhook_event, at=at))
    with connection.cursor() as cursor:
        cursor.execute(_cancel_statement(), params)
        rows = cursor.fetchall()
    return list(zip(_to_jobs(rows), [row[-1] for row in rows], strict=True))
