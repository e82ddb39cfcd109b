"""What drf-spectacular cannot infer about schedules: the schedule's ``job`` as the server
checks it (the processed submission schema of POST /jobs, less run_at and delay_seconds), the
time zones by name, unknown fields refused, and no defaults in a PATCH. Runs after the jobs
hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""

from __future__ import annotations

import copy
from typing import Any

from apps.schedules.cron import TIMEZONE_MAX_LENGTH, timezones
from apps.schedules.services import NOT_IN_JOB, NOT_IN_SCHEDULED_JOB


def _job_schema(submit: dict[str, Any]) -> dict[str, Any]:
    job = copy.deepcopy(submit)
    job.pop("not", None)
    for name in (*NOT_IN_JOB, *NOT_IN_SCHEDULED_JOB):
        job["properties"].pop(name, None)
    job["description"] = "A job submission (POST /api/v1/jobs) without run_at or delay_seconds."
    return job


def _schedule_body(body: dict[str, Any], *, patch: bool) -> None:
    body["additionalProperties"] = False
    timezone = body["properties"]["timezone"]
    timezone.update({"enum": sorted(timezones()), "maxLength": TIMEZONE_MAX_LENGTH})
    if patch:
        for field in body["properties"].values():
            field.pop("default", None)
        body["description"] = "The fields to change; `job` is replaced whole."


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    schemas = result.get("components", {}).get("schemas", {})
    if "JobSubmitDocRequest" in schemas and "ScheduleJobDocRequest" in schemas:
        schemas["ScheduleJobDocRequest"] = _job_schema(schemas["JobSubmitDocRequest"])
    if "ScheduleCreateDocRequest" in schemas:
        _schedule_body(schemas["ScheduleCreateDocRequest"], patch=False)
    if "PatchedScheduleCreateDocRequest" in schemas:
        _schedule_body(schemas["PatchedScheduleCreateDocRequest"], patch=True)
    return result
