"""Schedules: a client's recurring job, fired by the maintenance loop (apps/schedules/firing.py).

A schedule is due when it is enabled and its ``next_run_at`` has come. Firing it submits its
``job`` through the jobs services (validation, quota and fair dispatch as for any submission)
and moves ``next_run_at`` to the next tick after *now*, in one transaction: a tick fires once
whatever the number of schedulers, and ticks missed while no scheduler ran fire once, not in a
burst.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.clients.models import ApiClient
from apps.core.ids import uuid7
from apps.schedules.cron import CRON_MAX_LENGTH, DEFAULT_TIMEZONE, TIMEZONE_MAX_LENGTH

NAME_MAX_LENGTH = 200


class Overlap(models.TextChoices):
    # No run while the previous one (its last_job) is active: the tick is skipped.
    SKIP = "skip"
    # Every tick fires, whatever the previous run is doing.
    ALLOW = "allow"


class SkipReason(models.TextChoices):
    """Why a tick fired no job (``last_skip_reason``)."""

    OVERLAP = "overlap"  # overlap=skip and the previous run was still active
    QUOTA_EXCEEDED = "quota_exceeded"  # the client was at its active-jobs quota
    INVALID_JOB = "invalid_job"  # the job no longer validates (a type removed, a cap lowered)


class Schedule(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # Indexed by the composite indexes below, which lead with client.
    client = models.ForeignKey(
        ApiClient, on_delete=models.CASCADE, related_name="schedules", db_index=False
    )
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    cron = models.CharField(max_length=CRON_MAX_LENGTH, help_text="Five fields, e.g. 30 2 * * *.")
    timezone = models.CharField(max_length=TIMEZONE_MAX_LENGTH, default=DEFAULT_TIMEZONE)
    job = models.JSONField(help_text="The submission body of each run (POST /api/v1/jobs).")
    enabled = models.BooleanField(default=True)
    overlap = models.CharField(max_length=8, choices=Overlap.choices, default=Overlap.SKIP)
    next_run_at = models.DateTimeField(
        null=True, blank=True, help_text="The next tick; empty while disabled."
    )
    last_run_at = models.DateTimeField(null=True, blank=True)
    # Not a foreign key: finished jobs are purged after their retention, schedules stay.
    last_job_id = models.UUIDField(null=True, blank=True)
    last_skipped_at = models.DateTimeField(null=True, blank=True)
    last_skip_reason = models.CharField(
        max_length=16, choices=SkipReason.choices, blank=True, help_text="Of the last skipped tick."
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        # Staff roles (apps/staff/roles.py): operators run and pause schedules, admins edit them.
        permissions = [
            ("trigger_schedule", "Can run schedules now"),
            ("toggle_schedule", "Can enable and disable schedules"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="schedule_client_name")
        ]
        indexes = [
            # The list endpoint: own schedules newest first (keyset on id).
            models.Index(fields=["client", "-id"], name="schedule_client_id"),
            # The firing step: enabled schedules by their next tick.
            models.Index(fields=["next_run_at"], name="schedule_due", condition=Q(enabled=True)),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"
