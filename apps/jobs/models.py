"""Jobs and their append-only event log.

Every status change is a conditional UPDATE by apps/jobs/store.py, decided by
apps/jobs/services.py, plus one JobEvent row; no other code writes ``Job.status``.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from apps.clients.models import ApiClient
from apps.core.ids import uuid7


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE_STATUSES = frozenset(set(JobStatus) - TERMINAL_STATUSES)
# Statuses in which a job waits for a start and can be canceled at once.
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING})


class JobPriority(models.IntegerChoices):
    # Stored as a number so that the claim query can order by it from an index.
    LOW = 0, "low"
    NORMAL = 1, "normal"
    HIGH = 2, "high"


PRIORITY_NAMES = {p.value: p.label for p in JobPriority}
PRIORITY_VALUES = {p.label: p.value for p in JobPriority}


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # Indexed by the composite indexes below, which lead with client. A client with jobs is
    # deactivated, not deleted: the foreign key refuses the delete (DO_NOTHING leaves it to the
    # database constraint, which also lets the events below cascade inside the database).
    client = models.ForeignKey(
        ApiClient, on_delete=models.DO_NOTHING, related_name="jobs", db_index=False
    )
    type = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=JobStatus.choices)
    input = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    result = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.JSONField(null=True, blank=True)
    progress = models.JSONField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(
        choices=JobPriority.choices, default=JobPriority.NORMAL
    )
    queue = models.CharField(max_length=64)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField()
    retry_backoff_seconds = models.FloatField(
        null=True, blank=True, help_text="Backoff base for this job; empty means the type's."
    )
    timeout_seconds = models.PositiveIntegerField()
    # NULL, not "": the API's null, and what the partial unique constraint below skips.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    webhook_url = models.URLField(max_length=2048, null=True, blank=True)  # noqa: DJ001
    webhook_events = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    run_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Operational fields, not part of the public representation.
    version = models.PositiveIntegerField(default=1, help_text="Bumped by every update (ETag).")
    request_id = models.CharField(max_length=128, blank=True)
    task_id = models.CharField(max_length=64, blank=True, help_text="Celery id of the last run.")
    worker = models.CharField(max_length=255, blank=True, help_text="Worker of the last run.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last run message was published."
    )
    # Its client is deactivated: the job keeps its status but no worker claims it until the
    # client is active again (apps/jobs/holds.py). Out of the claim's index, so held jobs cost
    # the other clients' claims nothing however many there are.
    held = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Its client is inactive: not started until the client is active again.",
    )
    # Flow control (API.md, "Sharing the pools fairly"): at most concurrency_limit of the
    # client's jobs with this key run at once. NULL, not "": no key.
    concurrency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    # The claim counted this run in its client's RunningCount rows: the client-wide one (the
    # client had a cap then) and its key's. The change that ends the run gives them back.
    client_slot = models.BooleanField(default=False, db_default=False)
    key_slot = models.BooleanField(default=False, db_default=False)
    # Unique jobs (API.md, "Unique jobs"): while the client has an active job with this key (or,
    # with unique_for_seconds, one created within that window), submitting it again creates
    # nothing and answers with that job. NULL, not "": no key.
    unique_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    unique_for_seconds = models.PositiveIntegerField(null=True, blank=True)

    # The schedule that fired it (apps/schedules), or NULL. A plain column, not a foreign key:
    # schedules sit above jobs (docs/architecture.md), and a deleted schedule leaves its jobs
    # with the id they were fired by.
    schedule_id = models.UUIDField(null=True, blank=True, help_text="The schedule that fired it.")

    # Workflows (API.md, "Workflows"; docs/architecture.md, "Dependencies"): the jobs it waits
    # for, and how many of them have not succeeded yet. A job with pending dependencies is out of
    # job_claimable_by_client (it costs the claim nothing); the statement that records the
    # success of its last dependency sets the count to 0, and a dependency that ends failed or
    # canceled cancels it (dependency_failed). ``has_dependents``: some job was submitted with
    # this one in its depends_on (set under the row's lock at submission), so the change that
    # ends this job also settles its dependents; jobs without dependents pay nothing for it.
    depends_on = ArrayField(models.UUIDField(), default=list, db_default=[], blank=True, size=100)
    pending_dependencies = models.PositiveSmallIntegerField(default=0, db_default=0)
    has_dependents = models.BooleanField(default=False, db_default=False)

    # Set on the instance a submission returns when it found this job instead of creating one
    # (apps/jobs/uniqueness.py); never stored.
    duplicate = False

    class Meta:
        ordering = ["-id"]
        # Staff roles (apps/staff): what the admin's job actions need.
        permissions = [("cancel_job", "Can cancel jobs"), ("retry_job", "Can retry jobs")]
        indexes = [
            # The list endpoint: own jobs newest first, optionally by status (keyset on id).
            models.Index(fields=["client", "-id"], name="job_client_id"),
            models.Index(fields=["client", "status", "-id"], name="job_client_status_id"),
            # The list filtered by type. (metadata[key]=value is served by a GIN index on
            # metadata, jsonb_path_ops, that only PostgreSQL has: migration 0002 creates it
            # outside the model state. The queue filter rides the two indexes above: a
            # deployment has a handful of queues, so a page is found after a short walk.)
            models.Index(fields=["client", "type", "-id"], name="job_client_type_id"),
            # The maintenance loop: due scheduled/retrying jobs, stale heartbeats, lost messages.
            models.Index(
                fields=["run_at"],
                name="job_due",
                condition=Q(status__in=["scheduled", "retrying"]),
            ),
            models.Index(
                fields=["heartbeat_at"], name="job_running_hb", condition=Q(status="running")
            ),
            # Workers claim the next queued job of a queue, fairly between clients
            # (apps/jobs/store.py, NEXT_QUEUED): the clients waiting in a queue by a skip scan,
            # each client's best job (highest priority, then oldest) by one probe.
            models.Index(
                fields=["queue", "client", "-priority", "id"],
                name="job_claimable_by_client",
                condition=Q(status="queued", held=False, pending_dependencies=0),
            ),
            # The running jobs of a queue per client: the fair share's aggregate.
            models.Index(
                fields=["queue", "client"], name="job_running", condition=Q(status="running")
            ),
            # A schedule's jobs, newest first (the admin's link from a schedule to its jobs).
            models.Index(
                fields=["schedule_id", "-id"],
                name="job_schedule_id",
                condition=Q(schedule_id__isnull=False),
            ),
            # Workflows: the jobs that wait for a given job (release and cancel), a small index
            # of the waiting dependents only; and every job that depends on it (the admin).
            GinIndex(
                fields=["depends_on"],
                name="job_waiting_dependents",
                condition=Q(pending_dependencies__gt=0),
            ),
            GinIndex(
                fields=["depends_on"],
                name="job_depends_on",
                condition=Q(depends_on__len__gt=0),
            ),
            # Held jobs (their client is inactive), to release them when it is active again.
            models.Index(fields=["client"], name="job_held", condition=Q(held=True)),
            # Retention: finished jobs by age.
            models.Index(
                fields=["finished_at"],
                name="job_finished",
                condition=Q(status__in=["succeeded", "failed", "canceled"]),
            ),
            # The console's failed jobs and dead letters (apps/jobs/search.py), newest first.
            # Only failed rows enter it: the submission and claim paths never write it.
            models.Index(fields=["-id"], name="job_failed", condition=Q(status="failed")),
            # Unique jobs: a client's jobs with a key, newest first (the duplicate check).
            models.Index(
                fields=["client", "unique_key", "-id"],
                name="job_unique_key",
                condition=Q(unique_key__isnull=False),
            ),
            # Admin search by idempotency key. (Uniqueness of keys is IdempotencyRecord's job: a
            # batch's jobs share their request's key.)
            models.Index(
                fields=["idempotency_key"],
                name="job_idempotency_key",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobEvent(models.Model):
    """One row per status change (and per attempt's error): append-only."""

    # Deleted by the database with its job: purging a job never loads its events.
    job = models.ForeignKey(Job, on_delete=models.DB_CASCADE, related_name="events", db_index=False)
    from_status = models.CharField(max_length=16, choices=JobStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=JobStatus.choices)
    attempt = models.PositiveIntegerField(default=0)
    at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "id"], name="jobevent_job_id")]

    def __str__(self) -> str:
        return f"{self.job_id}: {self.from_status or '∅'} → {self.to_status}"


class IdempotencyRecord(models.Model):
    """The stored outcome of a POST made with an ``Idempotency-Key`` (API.md, "Idempotency").

    One per (client, key): a replay answers with exactly this status and body. Written in the
    same transaction as the jobs it created, so a record exists if and only if they do.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    response = models.BinaryField()
    location = models.CharField(max_length=255, blank=True)
    etag = models.CharField(
        max_length=32, blank=True, default="", help_text="The job's ETag as of the response."
    )
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="idempotency_client_key")
        ]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key}"


class RunningCount(models.Model):
    """How many of a client's jobs run now: all of them (``key`` "") or those of one
    concurrency key. Written only by the job store: the claim adds one (when the row is under
    its limit, re-checked on the row's latest version, so the limit is exact across
    processes) and the change that ends a run takes it back, in the same statements."""

    client = models.ForeignKey(ApiClient, on_delete=models.DB_CASCADE, related_name="+")
    key = models.CharField(max_length=200, blank=True)
    running = models.IntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="runningcount_client_key")
        ]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key or '*'} {self.running}"


class RateWindow(models.Model):
    """A rate-limited job type's current window: when it began and how many starts it has had.
    Written only by the job store's claim, which locks the row, re-checks it and counts the
    start in the same statement (exact across processes)."""

    job_type = models.CharField(max_length=100, unique=True)
    window_start = models.DateTimeField(null=True, blank=True)
    starts = models.IntegerField(default=0, db_default=0)

    def __str__(self) -> str:
        return f"{self.job_type}: {self.starts} since {self.window_start}"


class FinishedCount(models.Model):
    """How many jobs finished in one minute, per queue, type and outcome (``succeeded``,
    ``failed``, ``canceled``): the dashboard's throughput and failure rates, read from a few
    thousand of these rows instead of millions of jobs. Written only by
    apps/jobs/throughput.py's rollup step, which recounts a trailing window of minutes from the
    jobs table (its ``job_finished`` index) and replaces their rows."""

    minute = models.DateTimeField()
    queue = models.CharField(max_length=64)
    type = models.CharField(max_length=100)
    outcome = models.CharField(max_length=16, choices=JobStatus.choices)
    count = models.IntegerField()

    class Meta:
        verbose_name = "finished-jobs count"
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "queue", "type", "outcome"], name="finishedcount_minute_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.queue}/{self.type} {self.outcome}: {self.count}"


class FinishedCountMark(models.Model):
    """The rollup's progress: its one row says up to when ``FinishedCount`` was counted. The
    step locks it (two schedulers by mistake take turns) and moves it in the transaction that
    writes the counts, so a crash leaves the counts and the mark as they were."""

    counted_to = models.DateTimeField()

    class Meta:
        verbose_name = "finished-jobs count mark"

    def __str__(self) -> str:
        return f"counted to {self.counted_to}"


class BulkActionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobBulkAction(models.Model):
    """A retry or cancel of every job matching an admin filter, run in the background in short
    chunks (apps/jobs/bulk.py). The row is its progress: the console shows it."""

    ACTIONS = (("retry", "retry"), ("cancel", "cancel"))

    action = models.CharField(max_length=16, choices=ACTIONS)
    # The list's query string (its filters and search), as the confirmation page showed it.
    query = models.CharField(max_length=2000, blank=True)
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField()
    # How many jobs matched when it was confirmed.
    expected = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=BulkActionStatus.choices, default=BulkActionStatus.PENDING
    )
    # Keyset position: the last job id handled (ids are walked in ascending order).
    cursor = models.UUIDField(null=True, blank=True)
    # Jobs created after the confirmation are not touched: the walk stops at this id.
    upto = models.UUIDField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "bulk job action"
        indexes = [
            models.Index(
                fields=["id"], name="jobbulk_open", condition=Q(status__in=["pending", "running"])
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} #{self.pk} ({self.status})"
