"""Writes to jobs: submission, client actions, the worker-side transitions and the maintenance
loop's promotions and recoveries. All of a job's policy lives here; the SQL is the store's.

Every status change is a conditional UPDATE (``WHERE id = … AND status = …``, plus the attempt
number for worker transitions) whose row count decides a race: a cancel and a start that arrive
together cannot both win, and a worker that lost its job to crash recovery cannot overwrite the
new attempt's outcome. Each change writes one JobEvent row in the same statement
(apps/jobs/store.py) and announces itself through ``job_changed`` (status cache, metrics).

A failed attempt is decided in one place, ``failure_outcome``, whoever reports it: the worker
(``job_fail``) or the maintenance loop finding a worker gone (``jobs_recover_stale``).

Services know nothing of HTTP: views, tasks, commands and tests call the same functions.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models.base import ModelState
from django.dispatch import Signal
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.core.errors import InvalidState, NotFound, QuotaExceeded, ValidationFailed
from apps.core.ids import uuid7_with_time
from apps.core.urlguard import webhook_hosts_resolved
from apps.jobs import dependencies, store, uniqueness
from apps.jobs.dispatch import publish_on_commit
from apps.jobs.instrumentation import record_submitted
from apps.jobs.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    Job,
    JobStatus,
)
from apps.jobs.queues import full_rate_windows
from apps.jobs.registry import get_job_type, rate_limits
from apps.jobs.status_cache import cache_jobs_on_commit
from apps.jobs.store import Change, Event, EventKind, JobChanges, JobMatch
from apps.jobs.submission import Submission, parse_submission
from apps.jobs.webhook_events import (
    EVENT_FOR_STATUS,
    JOB_CANCELED,
    JOB_PROGRESS,
    JOB_STARTED,
    JOB_SUCCEEDED,
)

# The maintenance loop's log: recoveries are its findings.
maintenance_logger = logging.getLogger("conveyor.maintenance")

# Sent inside the transaction of every change: receivers (webhook outbox, status cache) see the
# job as the change left it. ``previous`` is the status before; it equals job.status for changes
# that are not transitions (progress, cancel request). ``cached=True``: the sender writes the
# status cache itself, for many jobs at once (a worker's group of outcomes and claims).
job_changed = Signal()

_CAS_ATTEMPTS = 5


def _changed(job: Job, previous: str, **extra: Any) -> None:
    job_changed.send(sender=Job, job=job, previous=previous, **extra)


def _status_change(
    job_id: Any,
    expected: JobMatch,
    *,
    kind: EventKind,
    reason: dict[str, Any] | None = None,
    at: datetime,
    changes: JobChanges,
) -> Change:
    """One status change: the conditional update, its event and (when the job subscribes to
    it) its webhook delivery."""
    return Change(
        where={"id": job_id, **expected},
        changes=changes,
        event=Event(kind=kind, at=at, details=reason or {}),
        webhook_event=EVENT_FOR_STATUS.get(changes.get("status", "")),
    )


def _apply(
    changes: Sequence[Change], *, cached: bool = False, locked: bool = False
) -> list[Job | None]:
    """Make status changes (one round trip per shape of change) and announce those that
    happened (``cached``: the caller writes them to the status cache). Several changes lock
    their jobs in id order first (store.lock_jobs), unless the caller did (``locked``)."""
    ending = any(c.changes.get("status") in TERMINAL_STATUSES for c in changes)
    connection = transaction.get_connection()
    several = len(changes) > 1 and not locked
    # A change that ends a job settles its dependents in the same transaction.
    with (
        transaction.atomic()
        if (ending or several) and not connection.in_atomic_block
        else nullcontext()
    ):
        if several:
            store.lock_jobs([change.where["id"] for change in changes])
        jobs = store.change_jobs(changes)
        for change, job in zip(changes, jobs, strict=True):
            if job is not None:
                _changed(job, change.where["status"], cached=cached)
        if ending:
            settle_dependents([job for job in jobs if job is not None], at=timezone.now())
    return jobs


# --- Dependencies (workflows; docs/architecture.md, "Dependencies") --------------------------

DEPENDENCY_FAILED = {
    "code": "dependency_failed",
    "message": "A job it depends on ended failed or canceled.",
}


def settle_dependents(jobs: Sequence[Job], *, at: datetime, wake: bool = True) -> list[Job]:
    """In the transaction of the change that ended ``jobs``: count the successes in their
    waiting dependents (those left with no pending dependency are claimable at commit, and
    their pools are woken then), and cancel the dependents of the failed and canceled ones,
    transitively. Only jobs marked ``has_dependents`` cost a statement. Returns the released
    dependents (``wake=False``: the caller wakes their pools, after claiming what it can of
    them itself)."""
    done = [j.pk for j in jobs if j.has_dependents and j.status == JobStatus.SUCCEEDED]
    ended = [
        j.pk
        for j in jobs
        if j.has_dependents and j.status in (JobStatus.FAILED, JobStatus.CANCELED)
    ]
    released: list[Job] = []
    if done:
        released = store.release_dependents(done, at=at)
        for job in released:
            _changed(job, job.status)
        if wake:
            publish_on_commit(_claimable(released))
    if ended:
        cancel_dependents(ended, at=at)
    return released


def _claimable(jobs: Sequence[Job]) -> list[Job]:
    return [j for j in jobs if j.status == JobStatus.QUEUED and not j.pending_dependencies]


def cancel_dependents(ids: Sequence[Any], *, at: datetime) -> dict[Any, Job]:
    """Cancel (``dependency_failed``) every waiting job depending on ``ids``, however deep,
    by one recursive statement. A job submitted concurrently with one of those canceled (its
    submission held that job's row lock while the statement ran) is invisible to it: a second
    statement from the canceled jobs that have dependents finds those, and nothing else (it
    returns no row in the usual case). Returns the canceled jobs by id."""
    canceled: dict[Any, Job] = {}
    sources = list(ids)
    while sources:
        found = store.cancel_dependents(
            sources, at=at, error=DEPENDENCY_FAILED, webhook_event=JOB_CANCELED
        )
        for job, previous in found:
            _changed(job, previous)
            canceled[job.pk] = job
        sources = [job.pk for job, _ in found if job.has_dependents]
    return canceled


def _link_dependencies(
    client: ApiClient,
    jobs: Sequence[Job],
    depends: Sequence[list[Any]],
    duplicates: dict[Any, Any],
    *,
    field: Callable[[Job], str],
) -> set[Any]:
    """Give the new ``jobs`` (each with its ``depends`` ids; ``duplicates`` maps a batch job
    answered by an existing one to that job's id) their ``depends_on`` and pending counts,
    under the dependencies' row locks. ValidationFailed when one is not the client's job.
    Returns the failed or canceled dependencies, whose new dependents are canceled at once."""
    new_ids = {job.pk for job in jobs}
    for job, ids in zip(jobs, depends, strict=True):
        job.depends_on = list(dict.fromkeys(duplicates.get(i, i) for i in ids))
    external = sorted({i for job in jobs for i in job.depends_on if i not in new_ids})
    statuses = store.link_dependencies(client_id=client.pk, ids=external)
    errors: dict[str, list[str]] = {}
    for job in jobs:
        missing = [str(i) for i in job.depends_on if i not in new_ids and i not in statuses]
        if missing:
            errors[field(job)] = [f"Unknown job id(s): {', '.join(missing)}."]
    if errors:
        raise ValidationFailed("Some dependencies are not jobs of yours.", details=errors)
    by_id = {job.pk: job for job in jobs}
    doomed: set[Any] = set()
    for job in jobs:
        pending = 0
        for dep in job.depends_on:
            if dep in by_id:
                by_id[dep].has_dependents = True
            elif statuses[dep] == JobStatus.SUCCEEDED:
                continue
            elif statuses[dep] in TERMINAL_STATUSES:
                doomed.add(dep)
            pending += 1
        job.pending_dependencies = pending
    return doomed


def _transition(
    job_id: Any,
    expected: JobMatch,
    *,
    kind: EventKind,
    reason: dict[str, Any] | None = None,
    at: datetime,
    changes: JobChanges,
) -> Job | None:
    """One status change (``_status_change``), announced when it happened."""
    change = _status_change(job_id, expected, kind=kind, reason=reason, at=at, changes=changes)
    return _apply([change])[0]


# --- Submission ---------------------------------------------------------------------------


def _job_values(
    client: ApiClient,
    submission: Submission,
    request_id: str,
    idempotency_key: str | None,
    schedule_id: Any,
) -> dict[str, Any]:
    """The attributes of a new job for a validated submission (attnames)."""
    job_id, created_at = uuid7_with_time()
    status = JobStatus.SCHEDULED if submission.run_at is not None else JobStatus.QUEUED
    return {
        "id": job_id,
        "client_id": client.pk,
        "type": submission.job_type.name,
        "status": status,
        "input": submission.input,
        "priority": submission.priority,
        "queue": submission.job_type.queue,
        "max_attempts": submission.max_attempts,
        "retry_backoff_seconds": submission.retry_backoff_seconds,
        "timeout_seconds": submission.timeout_seconds,
        "idempotency_key": idempotency_key,
        "webhook_url": submission.webhook_url,
        "webhook_events": submission.webhook_events,
        "metadata": submission.metadata,
        "concurrency_key": submission.concurrency_key,
        "concurrency_limit": submission.concurrency_limit,
        "unique_key": submission.unique_key,
        "unique_for_seconds": submission.unique_for_seconds,
        "created_at": created_at,
        "run_at": submission.run_at,
        "enqueued_at": created_at if status == JobStatus.QUEUED else None,
        "request_id": request_id,
        "schedule_id": schedule_id,
    }


def job_build(
    *,
    client: ApiClient,
    submission: Submission,
    request_id: str = "",
    idempotency_key: str | None = None,
    schedule_id: Any = None,
) -> Job:
    """An unsaved Job for a validated submission (``schedule_id``: the schedule firing it)."""
    return Job(**_job_values(client, submission, request_id, idempotency_key, schedule_id))


def jobs_build(
    *,
    client: ApiClient,
    submissions: Sequence[Submission],
    request_id: str = "",
    idempotency_key: str | None = None,
) -> list[Job]:
    """``job_build`` for each submission of a batch. The first job is made by ``Job()``; the
    others are copies of its attributes with their own values: Model.__init__ (every field's
    default, one setattr each) cost more than all of the batch's SQL for 1 000 jobs
    (docs/benchmarks.md, "Workflows"). Job has no pre_init/post_init receiver to skip; a default
    that is a list or dict is copied for each job."""
    if not submissions:
        return []
    first = job_build(
        client=client,
        submission=submissions[0],
        request_id=request_id,
        idempotency_key=idempotency_key,
    )
    base = {name: value for name, value in first.__dict__.items() if name != "_state"}
    mutable = [name for name, value in base.items() if isinstance(value, list | dict)]
    jobs = [first]
    for submission in submissions[1:]:
        values = dict(base)
        values.update(_job_values(client, submission, request_id, idempotency_key, None))
        for name in mutable:
            if values[name] is base[name]:
                values[name] = copy.copy(base[name])
        values["_state"] = ModelState()
        job = Job.__new__(Job)
        job.__dict__ = values
        jobs.append(job)
    return jobs


def check_quota(*, client: ApiClient, adding: int) -> None:
    """QuotaExceeded unless ``client`` may have ``adding`` more active (non-terminal) jobs.

    The count stops at the limit (``LIMIT`` on the client/status index), so the check costs
    the same for a client far below its quota as for one at it. Concurrent submissions can
    overshoot by a few jobs; the quota is a brake, not an accounting ledger.
    """
    if client.unlimited:
        return
    limit = client.max_active_jobs or settings.DEFAULT_MAX_ACTIVE_JOBS
    active = (
        Job.objects.using("default")
        .filter(client_id=client.pk, status__in=ACTIVE_STATUSES)
        .order_by()
        .values("pk")[:limit]
        .count()
    )
    if active + adding > limit:
        raise QuotaExceeded(
            f"{active} active jobs; this client may have at most {limit} at once.",
            details={"active_jobs": active, "max_active_jobs": limit},
            retry_after=settings.QUOTA_RETRY_AFTER_SECONDS,
        )


def job_submit(
    *,
    client: ApiClient,
    data: Any,
    request_id: str = "",
    idempotency_key: str | None = None,
    schedule_id: Any = None,
) -> Job:
    """Validate one submission, store it with its first event, and publish it after commit.
    ``schedule_id``: the schedule firing it (apps/schedules), else None.

    Raises ValidationFailed (every problem, keyed by field) or PayloadTooLarge; nothing is
    written then.
    """
    now = timezone.now()
    submission = parse_submission(data, now=now)
    job = job_build(
        client=client,
        submission=submission,
        request_id=request_id,
        idempotency_key=idempotency_key,
        schedule_id=schedule_id,
    )
    if submission.depends_on:
        ids, errors = dependencies.resolve_single(submission)
        if errors:
            raise ValidationFailed("The job submission is not valid.", details=errors)
        return _store(client, [job], now=now, depends=[ids], field=lambda _: "depends_on")[0]
    if job.unique_key is not None:
        return _store(client, [job], now=now)[0]
    check_quota(client=client, adding=1)
    # One statement (atomic by itself, so no BEGIN/COMMIT round trips when no transaction is
    # open); a creation is not a change anyone subscribes to (no "job.created" webhook, no
    # cache entry yet), so job_changed is not sent for it.
    store.insert_jobs([job], rate_limited=list(rate_limits()))
    record_submitted([job])
    return job


def _store(
    client: ApiClient,
    jobs: list[Job],
    *,
    now: datetime,
    depends: Sequence[list[Any]] | None = None,
    field: Callable[[Job], str] = lambda _: "depends_on",
) -> list[Job]:
    """Store those of ``jobs`` that are not duplicates (apps/jobs/uniqueness.py) and answer
    each with itself or with the job it duplicates (``duplicate`` set). ``depends``: each
    job's dependencies (ids; a dependency on a duplicate is one on the job it duplicates),
    linked under their row locks in the same transaction; a job whose dependency has already
    failed or been canceled is stored and canceled at once (dependency_failed).
    ``field``: the details key of a job's depends_on problem."""
    with transaction.atomic(using="default"):
        if any(job.unique_key is not None for job in jobs):
            existing = uniqueness.existing_for(jobs, now=now)
        else:
            existing = [None] * len(jobs)
        new = [job for job, found in zip(jobs, existing, strict=True) if found is None]
        doomed: set[Any] = set()
        if depends is not None:
            duplicates = {
                job.pk: found.pk for job, found in zip(jobs, existing, strict=True) if found
            }
            wanted = [ids for ids, found in zip(depends, existing, strict=True) if found is None]
            doomed = _link_dependencies(client, new, wanted, duplicates, field=field)
        if new:
            check_quota(client=client, adding=len(new))
            store.insert_jobs(new, rate_limited=list(rate_limits()))
        canceled = cancel_dependents(sorted(doomed), at=now) if doomed else {}
    record_submitted(new)
    answers = []
    for job, found in zip(jobs, existing, strict=True):
        if found is not None:
            found.duplicate = True
        answers.append(found if found is not None else canceled.get(job.pk, job))
    return answers


BATCH_MAX_JOBS = 1000


def job_submit_batch(
    *,
    client: ApiClient,
    data: Any,
    request_id: str = "",
    idempotency_key: str | None = None,
) -> list[Job]:
    """Validate and store up to 1 000 jobs at once: all of them, or none (ValidationFailed
    lists every problem as ``jobs.<index>.<field>``). One INSERT for the whole batch, events
    and wake-ups included; no per-job round trip."""
    items = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValidationFailed(
            'The body must be {"jobs": [job, …]} with at least one job.',
            details={"jobs": ["Expected a non-empty list."]},
        )
    if len(items) > BATCH_MAX_JOBS:
        raise ValidationFailed(
            f"A batch holds at most {BATCH_MAX_JOBS} jobs.",
            details={"jobs": [f"{len(items)} jobs; at most {BATCH_MAX_JOBS}."]},
        )
    now = timezone.now()
    submissions: list[Submission] = []
    errors: dict[str, list[str]] = {}
    # Each distinct webhook host is resolved once, side by side, within one time budget.
    with webhook_hosts_resolved(
        item.get("webhook_url") for item in items if isinstance(item, dict)
    ):
        for index, item in enumerate(items):
            try:
                submissions.append(parse_submission(item, now=now))
            except ValidationFailed as exc:
                for field, messages in exc.details.items():
                    errors[f"jobs.{index}.{field}"] = messages
    if errors:
        raise ValidationFailed(
            "Some jobs of the batch are not valid; none was stored.", details=errors
        )
    jobs = jobs_build(
        client=client,
        submissions=submissions,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )
    if any(s.depends_on or s.ref is not None for s in submissions):
        depends, errors = dependencies.resolve_batch(submissions, [job.pk for job in jobs])
        if errors:
            raise ValidationFailed(
                "Some jobs of the batch are not valid; none was stored.", details=errors
            )
        position = {job.pk: index for index, job in enumerate(jobs)}
        return _store(
            client,
            jobs,
            now=now,
            depends=depends,
            field=lambda job: f"jobs.{position[job.pk]}.depends_on",
        )
    if any(job.unique_key is not None for job in jobs):
        return _store(client, jobs, now=now)
    check_quota(client=client, adding=len(submissions))
    store.insert_jobs(jobs, rate_limited=list(rate_limits()))
    record_submitted(jobs)
    return jobs


# --- Client actions -------------------------------------------------------------------------


def _cancel_change(job: Job, now: datetime, by: str) -> Change | None:
    """The change that cancels ``job`` as it was read: a waiting job is canceled at once, a
    running one is asked to stop; None when it is running and already asked."""
    if job.status in WAITING_STATUSES:
        return _status_change(
            job.pk,
            {"status": job.status},
            kind=EventKind.CANCELED,
            reason={"reason": f"canceled by {by}"},
            at=now,
            changes={"status": JobStatus.CANCELED, "cancel_requested": True, "finished_at": now},
        )
    if job.status == JobStatus.RUNNING and not job.cancel_requested:
        return _status_change(
            job.pk,
            {"status": job.status, "cancel_requested": False},
            kind=EventKind.CANCEL_REQUESTED,
            reason={"cancel_requested": True},
            at=now,
            changes={"cancel_requested": True},
        )
    return None


def _retry_change(job: Job, now: datetime, by: str, *, pending: int = 0) -> Change:
    """The change that queues a failed or canceled ``job`` (as it was read) again, waiting for
    ``pending`` of its dependencies (``_retry_dependencies``)."""
    return _status_change(
        job.pk,
        {"status": job.status},
        kind=EventKind.RETRIED,
        reason={"reason": f"retried by {by}"},
        at=now,
        changes={
            "pending_dependencies": pending,
            "status": JobStatus.QUEUED,
            "attempts": 0,
            "result": None,
            "error": None,
            "progress": None,
            "run_at": None,
            "started_at": None,
            "finished_at": None,
            "heartbeat_at": None,
            "cancel_requested": False,
            "enqueued_at": now,
        },
    )


RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


def job_cancel(*, job: Job, by: str = "client") -> tuple[Job, bool]:
    """Cancel a job. Returns (job, finished): a waiting job is canceled at once (True); a running
    one gets ``cancel_requested`` and its worker stops it (False). Raises InvalidState for a
    finished job. ``by`` names who asked, in the event ("client", "staff")."""
    for _ in range(_CAS_ATTEMPTS):
        if job.status not in WAITING_STATUSES and job.status != JobStatus.RUNNING:
            raise InvalidState(
                f"The job is {job.status}; only a queued, scheduled, retrying or running job "
                "can be canceled.",
                details={"status": job.status},
            )
        change = _cancel_change(job, timezone.now(), by)
        if change is None:
            return job, False
        updated = _apply([change])[0]
        if updated is not None:
            return updated, updated.status == JobStatus.CANCELED
        # Lost a race with another transition: look again and decide anew.
        job.refresh_from_db()
    raise InvalidState("The job is changing too fast to cancel; try again.")


def job_retry(*, job: Job, client: ApiClient | None = None, by: str = "client") -> Job:
    """Run a failed or canceled job again: status ``queued``, attempts and outcome reset.
    ``by`` names who asked, in the event ("client", "staff")."""
    for _ in range(_CAS_ATTEMPTS):
        status = job.status
        if status not in RETRYABLE_STATUSES:
            raise InvalidState(
                f"The job is {status}; only a failed or canceled job can be retried.",
                details={"status": status},
            )
        check_quota(client=client or ApiClient.objects.get(pk=job.client_id), adding=1)
        with transaction.atomic():
            pending = _retry_dependencies(job)
            updated = _apply([_retry_change(job, timezone.now(), by, pending=pending)])[0]
            if updated is not None:
                if not pending:
                    publish_on_commit([updated])
                return updated
        try:
            job.refresh_from_db()
        except Job.DoesNotExist:
            # Purged past its retention by the step that locked it first (maintenance.py).
            raise NotFound() from None
    raise InvalidState("The job is changing too fast to retry; try again.")


def jobs_retry_many(*, jobs: Sequence[Job], by: str = "staff") -> list[Job]:
    """``job_retry`` for many jobs at once (the admin's bulk retry): the same change, event,
    webhook, status-cache update and wake-up for each, in one short transaction and a few round
    trips. Jobs no longer failed or canceled (changed since they were read), and those of a
    client whose quota has no room for them all, are left as they are. Returns those retried."""
    eligible = [job for job in jobs if job.status in RETRYABLE_STATUSES]
    per_client: dict[int, int] = {}
    for job in eligible:
        per_client[job.client_id] = per_client.get(job.client_id, 0) + 1
    clients = ApiClient.objects.in_bulk(list(per_client))
    refused = set()
    for client_id, count in per_client.items():
        try:
            check_quota(client=clients[client_id], adding=count)
        except QuotaExceeded:
            refused.add(client_id)
    now = timezone.now()
    with transaction.atomic():
        changes = []
        for job in eligible:
            if job.client_id in refused:
                continue
            try:
                # A job whose dependency failed or was canceled stays as it is (retry that first).
                pending = _retry_dependencies(job)
            except InvalidState:
                continue
            changes.append(_retry_change(job, now, by, pending=pending))
        updated = [job for job in _apply(changes) if job is not None]
        publish_on_commit([job for job in updated if not job.pending_dependencies])
    return updated


def jobs_cancel_many(*, jobs: Sequence[Job], by: str = "staff") -> list[Job]:
    """``job_cancel`` for many jobs at once (the admin's bulk cancel), in one short transaction:
    waiting jobs are canceled, running ones asked to stop; finished ones are left as they are.
    Returns those changed."""
    now = timezone.now()
    changes = [c for job in jobs if (c := _cancel_change(job, now, by)) is not None]
    with transaction.atomic():
        return [job for job in _apply(changes) if job is not None]


def _retry_dependencies(job: Job) -> int:
    """A retried job waits for its dependencies again, as at submission: how many have not
    succeeded yet (their rows locked and marked until the retry commits). One that failed or
    was canceled (or is gone past its retention) refuses the retry: retry it first."""
    if not job.depends_on:
        return 0
    statuses = store.link_dependencies(client_id=job.client_id, ids=job.depends_on)
    blocking = [
        str(dep)
        for dep in job.depends_on
        if statuses.get(dep, JobStatus.FAILED) in (JobStatus.FAILED, JobStatus.CANCELED)
    ]
    if blocking:
        raise InvalidState(
            "A job it depends on is failed or canceled; retry that job first.",
            details={"depends_on": blocking},
        )
    return sum(1 for dep in job.depends_on if statuses[dep] != JobStatus.SUCCEEDED)


# --- Worker-side transitions ------------------------------------------------------------------


def rate_limited_wait(queue: str) -> float | None:
    """Seconds until the first full rate window of ``queue``'s rate-limited job types ends,
    or None when none is full: when to wake the pool for jobs that wait on a rate limit."""
    limited = {
        name: rate
        for name, rate in rate_limits().items()
        if (jt := get_job_type(name)) is not None and jt.queue == queue
    }
    if not limited:
        return None
    ends = full_rate_windows(limited).values()
    return min(ends) if ends else None


def on_client_created(sender: Any, instance: ApiClient, created: bool = False, **_: Any) -> None:
    """A new client gets the running count its cap is checked against (post_save)."""
    if created:
        store.ensure_client_count(instance.pk)


def _claim_change(worker: str, task_id: str, where: JobMatch) -> Change:
    now = timezone.now()
    return Change(
        where=where,
        changes={
            "status": JobStatus.RUNNING,
            "started_at": now,
            "heartbeat_at": now,
            "progress": None,
            "worker": worker[:255],
            "task_id": task_id[:64],
        },
        count_attempt=True,
        event=Event(kind=EventKind.CLAIMED, at=now, details={"worker": worker} if worker else {}),
        webhook_event=JOB_STARTED,
    )


def _claim_next(
    queue: str, count: int, worker: str, task_id: str, *, alone: bool, cached: bool = False
) -> list[Job]:
    """Claim up to ``count`` jobs of ``queue``. ``alone``: the claim is its transaction's only
    write, which may then skip waiting for its WAL flush (a claim lost in a database crash only
    puts the job back in the queue, where it runs again)."""
    change = _claim_change(worker, task_id, {"status": JobStatus.QUEUED})
    jobs = store.claim_next_jobs(
        queue=queue, count=count, change=change, rates=rate_limits(), async_commit=alone
    )
    for job in jobs:
        _changed(job, JobStatus.QUEUED, cached=cached)
    return jobs


def job_claim_next(*, queue: str, worker: str = "", task_id: str = "") -> Job | None:
    """Claim the next queued job of ``queue`` for this worker: highest priority, then oldest.

    ``FOR UPDATE SKIP LOCKED`` lets concurrent workers claim different jobs without waiting on
    each other; the ``status = queued`` condition on the UPDATE decides any remaining race.
    Returns None when nothing is queued.
    """
    jobs = _claim_next(queue, 1, worker, task_id, alone=True)
    return jobs[0] if jobs else None


def job_start(*, job_id: Any, worker: str = "", task_id: str = "") -> Job | None:
    """Claim one particular queued job. None when it is not queued (canceled meanwhile,
    claimed by another worker)."""
    change = _claim_change(
        worker,
        task_id,
        {"id": job_id, "status": JobStatus.QUEUED, "held": False, "pending_dependencies": 0},
    )
    job = store.change_job(
        where=change.where,
        changes=change.changes,
        event=change.event,
        count_attempt=True,
        webhook_event=change.webhook_event,
        async_commit=True,
    )
    if job is not None:
        _changed(job, JobStatus.QUEUED)
    return job


def _running(job: Job) -> JobMatch:
    # The attempt number fences a worker that lost its job to crash recovery: its late outcome
    # no longer matches the row and is discarded.
    return {"status": JobStatus.RUNNING, "attempts": job.attempts}


def _success(job: Job, result: dict[str, Any] | None, now: datetime) -> Change:
    return _status_change(
        job.pk,
        _running(job),
        kind=EventKind.SUCCEEDED,
        at=now,
        changes={
            "status": JobStatus.SUCCEEDED,
            "result": result if result is not None else {},
            "error": None,
            "finished_at": now,
            "heartbeat_at": None,
        },
    )


def job_succeed(*, job: Job, result: dict[str, Any] | None) -> Job | None:
    """Record the running attempt's result. None if the attempt no longer owns the job."""
    return _apply([_success(job, result, timezone.now())])[0]


def retry_delay(job: Job, attempt: int) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2^(attempt-1))).

    The base is the job's own (submitted within its type's limits) or its type's; the cap is
    the type's. Full jitter spreads the retries of many jobs that failed together.
    """
    job_type = get_job_type(job.type)
    base = job.retry_backoff_seconds or (job_type.retry_backoff_seconds if job_type else 2.0)
    cap = job_type.retry_backoff_max_seconds if job_type else 600.0
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


class FailureOutcome(NamedTuple):
    status: str
    changes: JobChanges


def failure_outcome(
    job: Job, *, retryable: bool, failed_at: datetime, now: datetime
) -> FailureOutcome:
    """What a failed attempt of ``job`` leads to: the one failure policy.

    - ``canceled`` when a cancel was requested meanwhile;
    - when the error is retryable and attempts remain, the next attempt after its backoff
      (``retry_delay``) counted from ``failed_at``: ``retrying`` until then, or ``queued`` at
      once when that moment has already passed (a worker found gone long after its last sign
      of life has waited out its backoff);
    - else ``failed``.
    """
    if job.cancel_requested:
        return FailureOutcome(JobStatus.CANCELED, {"finished_at": now})
    if retryable and job.attempts < job.max_attempts:
        run_at = failed_at + timedelta(seconds=retry_delay(job, job.attempts))
        if run_at < now:
            return FailureOutcome(JobStatus.QUEUED, {"enqueued_at": now})
        return FailureOutcome(JobStatus.RETRYING, {"run_at": run_at, "finished_at": None})
    return FailureOutcome(JobStatus.FAILED, {"finished_at": now})


def _fail_attempt(
    job: Job,
    *,
    error: dict[str, Any],
    retryable: bool,
    failed_at: datetime,
    now: datetime,
    reason: dict[str, Any],
) -> Job | None:
    """Record the failure of ``job``'s running attempt as ``failure_outcome`` decides."""
    for _ in range(2):
        change = _failure(
            job, error=error, retryable=retryable, failed_at=failed_at, now=now, reason=reason
        )
        updated = _apply([change])[0]
        if updated is not None:
            if updated.status == JobStatus.QUEUED:
                publish_on_commit([updated])
            return updated
        # A cancel request may have landed meanwhile; re-read once and decide again.
        fresh = Job.objects.filter(pk=job.pk, **_running(job)).first()
        if fresh is None:
            return None
        job = fresh
    return None


def _failure(
    job: Job,
    *,
    error: dict[str, Any],
    retryable: bool,
    failed_at: datetime,
    now: datetime,
    reason: dict[str, Any],
) -> Change:
    outcome = failure_outcome(job, retryable=retryable, failed_at=failed_at, now=now)
    return _status_change(
        job.pk,
        {**_running(job), "cancel_requested": job.cancel_requested},
        kind=EventKind.ATTEMPT_FAILED,
        reason=reason,
        at=now,
        changes={"status": outcome.status, "error": error, "heartbeat_at": None, **outcome.changes},
    )


def _error(code: str, message: str, details: dict[str, Any] | None) -> dict[str, Any]:
    """A job's ``error``: code, message (at most 2000 characters), and the handler's
    ``details`` when it gave any."""
    error: dict[str, Any] = {"code": code, "message": message[:2000]}
    if details:
        error["details"] = details
    return error


def job_fail(
    *,
    job: Job,
    code: str,
    message: str,
    retryable: bool,
    now: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> Job | None:
    """Record a failed attempt, as ``failure_outcome`` decides: ``retrying`` (next attempt
    scheduled with backoff) when the error is retryable and attempts remain, ``canceled`` when a
    cancel was requested meanwhile, else ``failed``. None if the attempt no longer owns the
    job."""
    now = now or timezone.now()
    error = _error(code, message, details)
    return _fail_attempt(
        job, error=error, retryable=retryable, failed_at=now, now=now, reason={"error": error}
    )


def job_finish_canceled(*, job: Job) -> Job | None:
    """A running job whose handler honoured a cancel request ends ``canceled``."""
    return _apply([_honoured_cancel(job, timezone.now())])[0]


def _honoured_cancel(job: Job, now: datetime) -> Change:
    return _status_change(
        job.pk,
        _running(job),
        kind=EventKind.CANCEL_HONOURED,
        reason={"reason": "canceled while running"},
        at=now,
        changes={
            "status": JobStatus.CANCELED,
            "cancel_requested": True,
            "finished_at": now,
            "heartbeat_at": None,
        },
    )


def job_report_progress(*, job: Job, percent: int, message: str = "") -> bool | None:
    """Store the running attempt's progress. Returns whether a cancel was requested, or None if
    the attempt no longer owns the job."""
    progress = {"percent": max(0, min(100, int(percent))), "message": str(message)[:500]}
    now = timezone.now()
    updated = store.change_job(
        where={"id": job.pk, **_running(job)},
        changes={"progress": progress, "heartbeat_at": now},
        event=None,
        webhook_event=JOB_PROGRESS,
        at=now,
    )
    if updated is None:
        return None
    _changed(updated, JobStatus.RUNNING, progress=True)
    return updated.cancel_requested


def job_heartbeat(*, job: Job) -> bool | None:
    """Tell the maintenance loop the attempt is alive. Returns whether a cancel was requested,
    or None if the attempt no longer owns the job. Not a visible change: no version bump."""
    updated = store.change_job(
        where={"id": job.pk, **_running(job)},
        changes={"heartbeat_at": timezone.now()},
        event=None,
        bump_version=False,
    )
    return updated.cancel_requested if updated is not None else None


def jobs_heartbeat(*, jobs: Sequence[Job]) -> list[bool | None]:
    """``job_heartbeat`` for each of ``jobs`` (every job a worker process holds), in one round
    trip."""
    now = timezone.now()
    # In id order, as every statement that locks several jobs (store.LOCK_IN_ID_ORDER).
    changes = [
        Change(
            where={"id": job.pk, **_running(job)},
            changes={"heartbeat_at": now},
            event=None,
            bump_version=False,
        )
        for job in sorted(jobs, key=lambda job: job.pk)
    ]
    order = sorted(range(len(jobs)), key=lambda index: jobs[index].pk)
    states: list[bool | None] = [None] * len(jobs)
    for index, job in zip(order, store.change_jobs(changes), strict=True):
        states[index] = job.cancel_requested if job else None
    return states


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a worker's attempt of ``job`` ended, before it is recorded: ``succeeded`` (with
    ``result``), ``canceled`` (the handler honoured a cancel request) or ``failed`` (``code``,
    ``message``, ``retryable``, decided by ``failure_outcome`` when recorded). ``at``: when
    the handler ended (the job's ``finished_at``; default: when it is recorded)."""

    job: Job
    status: str
    result: dict[str, Any] | None = None
    code: str = ""
    message: str = ""
    retryable: bool = False
    at: datetime | None = None
    # A small JSON object the handler attached to its error (PermanentError/RetryableError
    # ``details``): the error's ``details``.
    details: dict[str, Any] | None = None


def _outcome_change(outcome: Outcome, now: datetime) -> Change:
    job, now = outcome.job, outcome.at or now
    if outcome.status == JobStatus.SUCCEEDED:
        return _success(job, outcome.result, now)
    if outcome.status == JobStatus.CANCELED:
        return _honoured_cancel(job, now)
    error = _error(outcome.code, outcome.message, outcome.details)
    reason = {"error": error}
    return _failure(
        job, error=error, retryable=outcome.retryable, failed_at=now, now=now, reason=reason
    )


def job_record(outcome: Outcome) -> Job | None:
    """Record one attempt's outcome (``job_succeed``, ``job_finish_canceled`` or ``job_fail``).
    None if the attempt no longer owns the job."""
    job = outcome.job
    if outcome.status == JobStatus.SUCCEEDED:
        return job_succeed(job=job, result=outcome.result)
    if outcome.status == JobStatus.CANCELED:
        return job_finish_canceled(job=job)
    return job_fail(
        job=job,
        code=outcome.code,
        message=outcome.message,
        retryable=outcome.retryable,
        details=outcome.details,
    )


def _give_back(job: Job, now: datetime) -> Change:
    # Its attempt never began: the count goes back to what it was before the claim.
    return _status_change(
        job.pk,
        _running(job),
        kind=EventKind.RELEASED,
        reason={"reason": "given back unstarted"},
        at=now,
        changes={
            "status": JobStatus.QUEUED,
            "attempts": job.attempts - 1,
            "started_at": None,
            "heartbeat_at": None,
            "enqueued_at": now,
        },
    )


class ClaimRequest(NamedTuple):
    queue: str
    size: int
    worker: str = ""
    task_id: str = ""


def jobs_record_and_claim(
    *,
    outcomes: Sequence[Outcome] = (),
    give_back: Sequence[Job] = (),
    claim: ClaimRequest | None = None,
) -> tuple[list[Job | None], list[Job]]:
    """A worker's round trip to the database, one transaction: record ``outcomes`` (each as
    ``job_record`` would), give back claimed jobs it will not start (``queued`` again, the
    attempt not counted, its slots released), and claim up to ``claim.size`` more jobs. One
    durable commit for all of it (the claim skips the WAL flush when it is alone).

    Returns (each outcome's job as recorded, or None when the attempt had lost the job; the
    claimed jobs). Nothing of it is visible to anyone before the commit: the status cache,
    metrics and wake-ups follow it (``job_changed`` receivers run on commit)."""
    now = timezone.now()
    with transaction.atomic():
        # Successes alone lock their rows in id order inside their statement; with failures or
        # give-backs (statements of their own), all of the rows are locked in id order first.
        mixed = [o.job.pk for o in outcomes if o.status != JobStatus.SUCCEEDED]
        if mixed or give_back:
            store.lock_jobs([*(o.job.pk for o in outcomes), *(j.pk for j in give_back)])
        # Successes: one statement for all of them (store.succeed_jobs).
        wins = [o for o in outcomes if o.status == JobStatus.SUCCEEDED]
        won = store.succeed_jobs(
            [(o.job, o.result if o.result is not None else {}, o.at or now) for o in wins],
            webhook_event=JOB_SUCCEEDED,
            at=now,
        )
        for winner in won.values():
            _changed(winner, JobStatus.RUNNING, cached=True)
        # Their dependents released by the same transaction, before this claim: the worker that
        # ran a fan-in's last dependency may claim the fan-in in the same round trip.
        released = settle_dependents(list(won.values()), at=now, wake=False)
        # The rest (failures, honoured cancels, give-backs): one round trip per shape.
        others = [o for o in outcomes if o.status != JobStatus.SUCCEEDED]
        changes = [_outcome_change(outcome, now) for outcome in others]
        changes += [_give_back(job, now) for job in give_back]
        done = _apply(changes, cached=True, locked=True)
        ended = dict(zip(map(id, others), done, strict=False))
        recorded: list[Job | None] = [
            won.get(o.job.pk) if o.status == JobStatus.SUCCEEDED else ended[id(o)] for o in outcomes
        ]
        for index, (outcome, job) in enumerate(zip(outcomes, recorded, strict=True)):
            if job is None and outcome.status == JobStatus.FAILED:
                # A cancel request may have landed since the claim: decided again on a re-read.
                recorded[index] = job_record(outcome)
            elif job is not None and job.status == JobStatus.QUEUED:
                publish_on_commit([job])
        given = [job for job in done[len(others) :] if job is not None]
        if given:
            publish_on_commit(given)
        claimed = []
        if claim is not None:
            alone = not outcomes and not give_back
            claimed = _claim_next(
                claim.queue, claim.size, claim.worker, claim.task_id, alone=alone, cached=True
            )
        # The released dependents this claim did not take wake their pools (none when it took
        # them all: no wake-up for other processes to spend a claim on, no NOTIFY round trip).
        mine = {job.pk for job in claimed}
        publish_on_commit([j for j in _claimable(released) if j.pk not in mine])
        # One write to the status cache for all of them, once committed.
        cache_jobs_on_commit([*won.values(), *(j for j in (*done, *claimed) if j is not None)])
    return recorded, claimed


# --- The maintenance loop's transitions -------------------------------------------------------


def jobs_promote_due_batch(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Queue scheduled and retrying jobs that are due (up to ``limit`` of each) and wake their
    pools. Returns how many."""
    now = now or timezone.now()
    promoted = 0
    for status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
        with transaction.atomic():
            jobs = store.change_due_jobs(
                status=status,
                due_by=now,
                limit=limit,
                changes={"status": JobStatus.QUEUED, "enqueued_at": now},
                event=Event(kind=EventKind.PROMOTED, at=now, details={"reason": "due"}),
            )
            for job in jobs:
                _changed(job, status)
            publish_on_commit(jobs)
        promoted += len(jobs)
    return promoted


def _stale_attempt_error(job: Job, *, now: datetime, grace: float) -> tuple[dict[str, Any], bool]:
    """What ended an attempt whose worker stopped beating, and whether to retry it: a timeout
    when it also ran past its timeout plus ``grace`` (retried if its type retries timeouts),
    else a lost worker (retried)."""
    if job.started_at is not None and now > job.started_at + timedelta(
        seconds=job.timeout_seconds + grace
    ):
        job_type = get_job_type(job.type)
        error = {"code": "timeout", "message": "the job ran over its timeout and its worker died"}
        return error, job_type.retry_on_timeout if job_type is not None else True
    worker = job.worker or "unknown"
    return {"code": "worker_lost", "message": f"the worker ({worker}) stopped heartbeating"}, True


def jobs_recover_stale_batch(
    *, heartbeat_timeout: float, grace: float, now: datetime | None = None, limit: int = 500
) -> int:
    """Take back running jobs whose worker stopped beating (SIGKILLed, machine gone, process
    killed at its hard time limit). Each is a failed attempt (``worker_lost``, or ``timeout``
    when it also ran past its timeout plus ``grace``) decided by ``failure_outcome`` as if its
    worker had reported it at its last heartbeat; a timeout is retried only if the job's type
    retries timeouts. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=heartbeat_timeout)
    recovered = 0
    with transaction.atomic():
        stale = (
            Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
            .select_for_update(skip_locked=True)
            .order_by("heartbeat_at")[:limit]
        )
        for job in stale:
            error, retryable = _stale_attempt_error(job, now=now, grace=grace)
            changed = _fail_attempt(
                job,
                error=error,
                retryable=retryable,
                failed_at=job.heartbeat_at or now,
                now=now,
                reason={"error": error, "recovered": True},
            )
            if changed is not None:
                recovered += 1
                maintenance_logger.warning(
                    "recovered job %s from %s: %s, now %s",
                    job.pk,
                    job.worker,
                    error["code"],
                    changed.status,
                )
    return recovered
