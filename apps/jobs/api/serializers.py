"""Serializers that document the jobs API in OpenAPI.

Validation of submissions happens in apps/jobs/submission.py (hand-written for speed) and
rendering in apps/jobs/representation.py; these classes describe the same shapes for
drf-spectacular and are checked against them by tests/jobs/test_api_schema.py.
"""

from __future__ import annotations

from rest_framework import serializers

from apps.jobs.models import PRIORITY_VALUES, JobStatus
from apps.jobs.representation import WAIT_REASONS
from apps.jobs.submission import DEPENDS_ON_MAX, REF_MAX_LENGTH, UNIQUE_FOR_MAX_SECONDS
from apps.jobs.webhook_events import WEBHOOK_EVENTS


class JobErrorDoc(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(
        required=False,
        help_text=(
            "Present when the handler attached more to its error; a Django task's exception "
            "gives exception_class (dotted path) and traceback."
        ),
    )


class JobProgressDoc(serializers.Serializer):
    percent = serializers.IntegerField(min_value=0, max_value=100)
    message = serializers.CharField()


class JobDoc(serializers.Serializer):
    id = serializers.CharField(help_text="Opaque, unique, URL-safe.")
    type = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    input = serializers.DictField()
    result = serializers.DictField(allow_null=True)
    error = JobErrorDoc(allow_null=True, help_text="The last error; set when failed.")
    progress = JobProgressDoc(allow_null=True)
    priority = serializers.ChoiceField(choices=list(PRIORITY_VALUES))
    queue = serializers.CharField(help_text="The worker pool that runs it.")
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    retry_backoff_seconds = serializers.FloatField(
        allow_null=True, help_text="Backoff base for retries; null means the type's default."
    )
    timeout_seconds = serializers.IntegerField()
    idempotency_key = serializers.CharField(allow_null=True)
    webhook_url = serializers.URLField(allow_null=True)
    webhook_events = serializers.ListField(child=serializers.ChoiceField(choices=WEBHOOK_EVENTS))
    metadata = serializers.DictField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    run_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    cancel_requested = serializers.BooleanField()
    concurrency_key = serializers.CharField(allow_null=True, min_length=1, max_length=200)
    concurrency_limit = serializers.IntegerField(allow_null=True, min_value=1, max_value=1000)
    unique_key = serializers.CharField(allow_null=True, min_length=1, max_length=200)
    unique_for_seconds = serializers.IntegerField(
        allow_null=True, min_value=1, max_value=UNIQUE_FOR_MAX_SECONDS
    )
    wait_reason = serializers.ChoiceField(
        choices=WAIT_REASONS,
        allow_null=True,
        help_text="Why the job has not started; null unless it is waiting.",
    )
    schedule_id = serializers.UUIDField(
        allow_null=True,
        help_text="The schedule that fired it (/api/v1/schedules); null for a job submitted "
        "directly. Kept when the schedule is deleted.",
    )
    depends_on = serializers.ListField(
        child=serializers.UUIDField(),
        max_length=DEPENDS_ON_MAX,
        help_text="The jobs it waits for (ids): it starts when every one has succeeded, and is "
        "canceled (error.code dependency_failed) when one ends failed or canceled.",
    )


class JobSubmitDoc(serializers.Serializer):
    type = serializers.CharField(help_text="A registered job type (GET /api/v1/job-types).")
    input = serializers.DictField(
        required=False, help_text="Validated against the type's input_schema."
    )
    priority = serializers.ChoiceField(choices=list(PRIORITY_VALUES), default="normal")
    run_at = serializers.DateTimeField(
        required=False, help_text="RFC 3339; at most 365 days ahead."
    )
    delay_seconds = serializers.FloatField(required=False, min_value=0, max_value=31536000)
    max_attempts = serializers.IntegerField(
        required=False, min_value=1, help_text="Capped by the type's max_attempts_limit."
    )
    timeout_seconds = serializers.IntegerField(
        required=False, min_value=1, help_text="Capped by the type's max_timeout_seconds."
    )
    retry_backoff_seconds = serializers.FloatField(
        required=False,
        min_value=0.1,
        help_text="Base of the exponential backoff between attempts (full jitter), at most the "
        "type's retry_backoff_max_seconds.",
    )
    webhook_url = serializers.URLField(required=False)
    webhook_events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS),
        required=False,
        help_text="Default: the terminal events.",
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=500, allow_blank=True),
        required=False,
        help_text="Your own labels: at most 20 string values; filter with metadata[key]=value.",
    )
    concurrency_key = serializers.RegexField(
        r"^[\x20-\x7e]{1,200}$",
        required=False,
        min_length=1,
        max_length=200,
        help_text="At most concurrency_limit of your jobs with this key run at once.",
    )
    concurrency_limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        help_text="Default 1 with a concurrency_key; without one it has no effect.",
    )
    unique_key = serializers.RegexField(
        r"^[\x20-\x7e]{1,200}$",
        required=False,
        min_length=1,
        max_length=200,
        help_text="While you have an active job with this key (or, with unique_for_seconds, one "
        "created within that window), submitting it again creates nothing and answers 200 with "
        "that job (in a batch: that job in its place).",
    )
    unique_for_seconds = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=UNIQUE_FOR_MAX_SECONDS,
        help_text="Also a duplicate: a job with this unique_key created within this many seconds, "
        "finished or not. Without a unique_key it has no effect.",
    )
    depends_on = serializers.ListField(
        child=serializers.CharField(min_length=1, max_length=REF_MAX_LENGTH),
        required=False,
        max_length=DEPENDS_ON_MAX,
        help_text="Up to 100 jobs it waits for: ids of your own jobs, or (in a batch) refs of "
        "earlier jobs of the same batch. It waits as queued (wait_reason dependencies) until "
        "every one has succeeded; when one ends failed or canceled it is canceled with "
        "error.code dependency_failed. An unknown id, another client's, a forward or unknown "
        "ref, or a cycle is 400 validation_error. Not in a schedule's job.",
    )
    ref = serializers.CharField(
        required=False,
        min_length=1,
        max_length=REF_MAX_LENGTH,
        help_text="Its name within its batch (unique there), for depends_on of later jobs of "
        "the batch. Outside a batch it has no effect. Not in a schedule's job.",
    )


class JobBatchDoc(serializers.Serializer):
    jobs = JobDoc(many=True, help_text="The stored jobs, in the order submitted.")


class JobBatchSubmitDoc(serializers.Serializer):
    jobs = JobSubmitDoc(many=True, help_text="1 to 1000 jobs: all are stored, or none.")


class JobPageDoc(serializers.Serializer):
    results = JobDoc(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null at the end.")


class JobTypeDoc(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    queue = serializers.CharField()
    timeout_seconds = serializers.IntegerField(help_text="Default timeout.")
    max_timeout_seconds = serializers.IntegerField()
    max_attempts = serializers.IntegerField(help_text="Default attempts.")
    max_attempts_limit = serializers.IntegerField()
    input_schema = serializers.DictField(help_text="JSON Schema of the input.")


class JobTypeListDoc(serializers.Serializer):
    results = JobTypeDoc(many=True)
