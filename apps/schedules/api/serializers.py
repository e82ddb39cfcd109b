"""Serializers that document the schedules API in OpenAPI (validation is services.py's,
rendering representation.py's). The schedule's ``job`` is the submission body of POST /jobs
less run_at and delay_seconds; ``openapi.py`` writes its exact schema from the jobs one."""

from __future__ import annotations

from rest_framework import serializers

from apps.jobs.api.serializers import JobSubmitDoc
from apps.schedules.cron import CRON_MAX_LENGTH, CRON_PATTERN, DEFAULT_TIMEZONE
from apps.schedules.models import NAME_MAX_LENGTH, Overlap, SkipReason

NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
CRON_HELP = (
    "Five fields separated by single spaces: minute hour day-of-month month day-of-week, as "
    "Debian's cron reads them (`*`, numbers, ranges, steps, lists, JAN-DEC, SUN-SAT; `L`/`LW` "
    "in day-of-month, `5L`/`1#2` in day-of-week). A range ends at or after its start, a "
    "day-of-month must exist in one of the months, and the expression must fire within 50 "
    "years (`0 0 LW 1 SUN` never does). Evaluated in `timezone`; a time that DST "
    "skips fires at the first minute after it, a time that DST repeats fires once."
)


class ScheduleJobDoc(JobSubmitDoc):
    """A job submission without run_at/delay_seconds (removed in openapi.py)."""


class ScheduleDoc(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField(min_length=1, max_length=NAME_MAX_LENGTH)
    cron = serializers.CharField(max_length=CRON_MAX_LENGTH, help_text=CRON_HELP)
    timezone = serializers.CharField(help_text="IANA time zone name.")
    job = serializers.DictField(help_text="The submission body of each run, as given.")
    enabled = serializers.BooleanField()
    overlap = serializers.ChoiceField(choices=Overlap.choices)
    next_run_at = serializers.DateTimeField(
        allow_null=True, help_text="The next tick; null while disabled."
    )
    last_run_at = serializers.DateTimeField(
        allow_null=True, help_text="When it last submitted a job (a tick or a trigger)."
    )
    last_job_id = serializers.UUIDField(allow_null=True)
    last_skipped_at = serializers.DateTimeField(
        allow_null=True, help_text="When a tick last fired no job."
    )
    last_skip_reason = serializers.ChoiceField(
        choices=SkipReason.choices,
        allow_null=True,
        help_text="Why: overlap (previous run still active), quota_exceeded (too many active "
        "jobs), invalid_job (the job no longer validates).",
    )
    created_at = serializers.DateTimeField()


class ScheduleCreateDoc(serializers.Serializer):
    name = serializers.RegexField(
        NAME_PATTERN,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        help_text="Unique among your schedules (409 already_exists otherwise).",
    )
    cron = serializers.RegexField(CRON_PATTERN, max_length=CRON_MAX_LENGTH, help_text=CRON_HELP)
    timezone = serializers.CharField(default=DEFAULT_TIMEZONE, help_text="IANA time zone name.")
    job = ScheduleJobDoc()
    enabled = serializers.BooleanField(default=True)
    overlap = serializers.ChoiceField(
        choices=Overlap.choices,
        default=Overlap.SKIP,
        help_text="skip: a tick fires no job while the previous run is active; allow: it does.",
    )


class SchedulePageDoc(serializers.Serializer):
    results = ScheduleDoc(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null at the end.")
