"""Job types that exist only in the test suite, to drive the worker into its corners."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from rest_framework import serializers

from apps.jobs.registry import JobContext, job_type


class SecondsInput(serializers.Serializer):
    seconds = serializers.FloatField(min_value=0, max_value=600, default=30)


@job_type("testing.stubborn", input=SecondsInput, timeout_seconds=60)
def stubborn(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Sleeps without ever looking at cancel requests."""
    time.sleep(input["seconds"])
    return {"slept": input["seconds"]}


@job_type("testing.hog", input=SecondsInput, timeout_seconds=1, retry_on_timeout=False)
def hog(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Ignores the soft time limit by catching everything: only the hard kill stops it."""
    deadline = time.monotonic() + input["seconds"]
    while time.monotonic() < deadline:
        # Swallowing the soft time limit on purpose.
        with contextlib.suppress(BaseException):
            time.sleep(0.05)
    return {}


class NothingInput(serializers.Serializer):
    pass


@job_type("testing.crash", input=NothingInput, max_attempts=2)
def crash(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Kills its own worker process: a poison job."""
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@job_type("testing.bad_result", input=NothingInput)
def bad_result(ctx: JobContext, input: dict[str, Any]) -> Any:
    """Returns something that is not a JSON object."""
    return ["not", "a", "dict"]


class SecretInput(serializers.Serializer):
    password = serializers.CharField()
    note = serializers.CharField(required=False, default="")


class BuggyValidatorInput(SecretInput):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the validator of testing.buggy_validator has a bug")


@job_type(
    "testing.buggy_validator",
    input=BuggyValidatorInput,
    sensitive_input_fields=frozenset({"password"}),
)
def buggy_validator(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Never runs: validating its input fails with an unexpected error (a bug → 500)."""
    return {}


@job_type(
    "testing.leaky_failure",
    input=SecretInput,
    max_attempts=1,
    sensitive_input_fields=frozenset({"password"}),
)
def leaky_failure(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """Fails with an unexpected error whose message quotes its secret input."""
    raise RuntimeError(f"could not log in with {input['password']} ({input['note']})")


@job_type("testing.rated", input=NothingInput, rate_limit="2/s")
def rated(ctx: JobContext, input: dict[str, Any]) -> dict[str, Any]:
    """At most two starts a second across the cluster."""
    return {}
