"""The fields of a job's representation (API.md, "The job object")."""

JOB_FIELDS = {
    "id",
    "type",
    "status",
    "input",
    "result",
    "error",
    "progress",
    "priority",
    "queue",
    "attempts",
    "max_attempts",
    "retry_backoff_seconds",
    "timeout_seconds",
    "idempotency_key",
    "webhook_url",
    "webhook_events",
    "metadata",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "cancel_requested",
    # API.md, "Sharing the pools fairly".
    "concurrency_key",
    "concurrency_limit",
    "wait_reason",
    # API.md, "Unique jobs".
    "unique_key",
    "unique_for_seconds",
    # API.md, "Workflows": the schedule that fired it, or null.
    "schedule_id",
    "depends_on",
}
