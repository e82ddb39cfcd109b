"""Built-in job types for smoke tests, load tests and demos."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from rest_framework import serializers

from apps.jobs.registry import JobCanceled, JobContext, PermanentError, RetryableError, job_type


class EchoInput(serializers.Serializer):
    message = serializers.CharField(max_length=10_000, allow_blank=True, trim_whitespace=False)
    sleep_seconds = serializers.FloatField(
        min_value=0, max_value=600, default=0, help_text="Sleep this long before answering."
    )
    fail_times = serializers.IntegerField(
        min_value=0,
        max_value=100,
        default=0,
        help_text="The first N attempts raise a retryable error.",
    )
    fail_permanently = serializers.BooleanField(
        default=False, help_text="Raise a non-retryable error."
    )
    progress_steps = serializers.IntegerField(
        min_value=0,
        max_value=100,
        default=0,
        help_text="Report progress this many times while sleeping.",
    )


# How often a sleeping echo looks at cancel requests.
_CANCEL_POLL_SECONDS = 0.05


def _sleep(ctx: JobContext, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if ctx.cancel_requested():
            raise JobCanceled()
        time.sleep(min(remaining, _CANCEL_POLL_SECONDS))


@job_type(
    "diagnostics.echo",
    input=EchoInput,
    queue="default",
    timeout_seconds=300,
    max_timeout_seconds=3600,
    max_attempts=3,
    max_attempts_limit=101,
    retry_backoff_seconds=1.0,
    retry_backoff_max_seconds=60.0,
)
def echo(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Echo the message back, optionally after sleeping, failing or reporting progress."""
    if input["fail_permanently"]:
        raise PermanentError("fail_permanently was set", code="echo_failed_permanently")
    if ctx.attempt <= input["fail_times"]:
        raise RetryableError(
            f"attempt {ctx.attempt} fails on purpose (fail_times={input['fail_times']})",
            code="echo_failed",
        )
    steps, total = input["progress_steps"], input["sleep_seconds"]
    if steps:
        for step in range(1, steps + 1):
            _sleep(ctx, total / steps)
            ctx.report_progress(round(100 * step / steps), f"step {step} of {steps}")
    elif total:
        _sleep(ctx, total)
    return {"message": input["message"], "attempt": ctx.attempt}


class ChecksumInput(serializers.Serializer):
    size_mib = serializers.IntegerField(
        min_value=1, max_value=1024, default=16, help_text="How much data to hash."
    )
    rounds = serializers.IntegerField(min_value=1, max_value=100, default=1)


@job_type(
    "diagnostics.checksum",
    input=ChecksumInput,
    queue="heavy",
    timeout_seconds=120,
    max_timeout_seconds=1800,
)
def checksum(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Hash pseudo-random data (CPU-bound work for the heavy pool): SHA-256 of size_mib MiB."""
    digest = hashlib.sha256()
    block = b"conveyor" * (128 * 1024)  # 1 MiB
    total = input["size_mib"] * input["rounds"]
    for done in range(1, total + 1):
        digest.update(block)
        if done % 16 == 0:
            if ctx.cancel_requested():
                raise JobCanceled()
            ctx.report_progress(round(100 * done / total), f"{done} MiB hashed")
    return {"sha256": digest.hexdigest(), "mib": total}
