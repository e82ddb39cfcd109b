"""The webhook event types a job emits (API.md, "Webhooks")."""

from __future__ import annotations

JOB_STARTED = "job.started"
JOB_PROGRESS = "job.progress"
JOB_RETRYING = "job.retrying"
JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELED = "job.canceled"

WEBHOOK_EVENTS = (JOB_STARTED, JOB_PROGRESS, JOB_RETRYING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELED)
TERMINAL_WEBHOOK_EVENTS = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELED)
DEFAULT_WEBHOOK_EVENTS = TERMINAL_WEBHOOK_EVENTS

# The event a status change emits.
EVENT_FOR_STATUS = {
    "running": JOB_STARTED,
    "retrying": JOB_RETRYING,
    "succeeded": JOB_SUCCEEDED,
    "failed": JOB_FAILED,
    "canceled": JOB_CANCELED,
}
