"""Unique jobs (API.md, "Unique jobs"): a submission with a ``unique_key`` creates nothing while
the client has an active job with that key (queued, scheduled, running, retrying) or, when it
gives ``unique_for_seconds``, a job with that key created within that many seconds; it is
answered with that job instead.

Exactly once under concurrent submissions, enforced by the database: the submitting
transaction takes a transaction-level advisory lock per (client, key) before it looks for an
existing job, and holds it until its own insert commits. A concurrent duplicate waits on the
lock, then (READ COMMITTED: each statement sees what committed before it began) finds the job
the first one created. Submissions without a key never take a lock or read anything here.

Locks are taken in the order of their ids, so two batches naming the same keys in different
orders cannot deadlock; two keys whose ids collide only share a lock (they wait on each other,
nothing else). The ids live in the two-integer advisory-lock space under ``LOCK_NAMESPACE``,
apart from the single-bigint locks of idempotency keys and the webhook claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Q

from apps.jobs.models import ACTIVE_STATUSES, Job

LOCK_NAMESPACE = 0x756E_6971  # "uniq": the first key of pg_advisory_xact_lock(int, int)

# The locks of the given keys, each once, in the order of their ids.
LOCK_KEYS = (
    "SELECT pg_advisory_xact_lock(%(namespace)s, h) FROM (SELECT DISTINCT "
    "hashtext(%(client)s::text || ':' || k) AS h FROM unnest(%(keys)s::text[]) k ORDER BY h) s"
)


def _lock(client_id: int, keys: Sequence[str]) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            LOCK_KEYS, {"namespace": LOCK_NAMESPACE, "client": client_id, "keys": list(keys)}
        )


def existing_for(jobs: Sequence[Job], *, now: datetime) -> list[Job | None]:
    """For each of ``jobs`` (one client's, not yet stored), the job that makes it a duplicate,
    or None when it is to be created. Must run inside the transaction that then inserts the
    jobs to create: it takes the keys' locks, held until that transaction ends.

    A later job of the same batch with the key of an earlier one is a duplicate of that one
    (which is active: it is being created).
    """
    keys = sorted({job.unique_key for job in jobs if job.unique_key is not None})
    if not keys:
        return [None] * len(jobs)
    client_id = jobs[0].client_id
    _lock(client_id, keys)
    windows = [job.unique_for_seconds for job in jobs if job.unique_for_seconds]
    recent = Q(status__in=ACTIVE_STATUSES)
    if windows:
        recent |= Q(created_at__gt=now - timedelta(seconds=max(windows)))
    stored: dict[str, list[Job]] = {}
    for found in (
        Job.objects.using("default")
        .filter(recent, client_id=client_id, unique_key__in=keys)
        .order_by("-id")
    ):
        stored.setdefault(str(found.unique_key), []).append(found)
    answers: list[Job | None] = []
    created: dict[str, Job] = {}
    for job in jobs:
        key = job.unique_key
        match = None if key is None else created.get(key) or _match(job, stored.get(key, ()), now)
        if match is None and key is not None:
            created[key] = job
        answers.append(match)
    return answers


def _match(job: Job, candidates: Sequence[Job], now: datetime) -> Job | None:
    """The newest active candidate, else the newest created within ``job``'s window."""
    for candidate in candidates:
        if candidate.status in ACTIVE_STATUSES:
            return candidate
    if job.unique_for_seconds:
        since = now - timedelta(seconds=job.unique_for_seconds)
        for candidate in candidates:
            if candidate.created_at > since:
                return candidate
    return None
