"""What drf-spectacular cannot infer: the submission body as the server really checks it, and
the links from a submitted job to the endpoints that take its id.

Run as a postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) over the generated
document. A schema-driven client or fuzzer (tests/e2e/test_schema_fuzz.py) sends what this
document describes, so every constraint that apps/jobs/submission.py enforces and JSON Schema can
say is said here: the registered job types, each type's own input schema and caps, unknown
fields refused, metadata keys and sizes, run_at and delay_seconds not both. What JSON Schema
cannot say (run_at at most 365 days ahead, a webhook URL that resolves to an allowed address) is
in the field's description.
"""

from __future__ import annotations

from typing import Any

from apps.core.urlguard import MAX_URL_LENGTH
from apps.jobs.registry import all_job_types
from apps.jobs.services import BATCH_MAX_JOBS
from apps.jobs.submission import METADATA_KEY, METADATA_MAX_KEYS, METADATA_VALUE_MAX

_JOB_ID_OPERATIONS = {
    "GetJob": "jobs_get",
    "CancelJob": "jobs_cancel",
    "RetryJob": "jobs_retry",
    "JobDeliveries": "jobs_deliveries",
}


def _submission_schema(submit: dict[str, Any]) -> None:
    types = all_job_types()
    submit["additionalProperties"] = False
    submit["not"] = {"required": ["run_at", "delay_seconds"]}
    properties = submit["properties"]
    properties["type"] = {
        "type": "string",
        "enum": [jt.name for jt in types],
        "description": "A registered job type (GET /api/v1/job-types).",
    }
    properties["webhook_url"]["maxLength"] = MAX_URL_LENGTH
    properties["metadata"].update(
        {
            "maxProperties": METADATA_MAX_KEYS,
            "propertyNames": {"pattern": f"^{METADATA_KEY.pattern}$"},
            "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX},
        }
    )
    branches = []
    for jt in types:
        input_schema = jt.input_schema
        branch: dict[str, Any] = {
            "type": "object",
            "properties": {
                "type": {"const": jt.name},
                "input": input_schema,
                "max_attempts": {"type": "integer", "maximum": jt.max_attempts_limit},
                "timeout_seconds": {"type": "integer", "maximum": jt.max_timeout_seconds},
                "retry_backoff_seconds": {
                    "type": "number",
                    "maximum": jt.retry_backoff_max_seconds,
                },
            },
        }
        if input_schema.get("required"):
            branch["required"] = ["input"]
        branches.append(branch)
    submit["oneOf"] = branches


def _links(paths: dict[str, Any]) -> None:
    targets = {
        ("/api/v1/jobs", "post"): "$response.body#/id",
        ("/api/v1/jobs/batch", "post"): "$response.body#/jobs/0/id",
    }
    for (path, method), expression in targets.items():
        operation = paths.get(path, {}).get(method)
        if operation is None:
            continue
        links = {
            name: {
                "operationId": operation_id,
                "parameters": {"job_id": expression},
                "description": f"The submitted job's id, for {operation_id}.",
            }
            for name, operation_id in _JOB_ID_OPERATIONS.items()
        }
        # A unique job's duplicate (200) is answered with the existing job: the same links.
        for status in ("202", "200"):
            if status in operation["responses"]:
                operation["responses"][status]["links"] = links


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    schemas = result.get("components", {}).get("schemas", {})
    if "JobSubmitDocRequest" in schemas:
        _submission_schema(schemas["JobSubmitDocRequest"])
    batch = schemas.get("JobBatchSubmitDocRequest")
    if batch is not None:
        # Other keys beside "jobs" are ignored, so the schema does not forbid them.
        batch["properties"]["jobs"].update({"minItems": 1, "maxItems": BATCH_MAX_JOBS})
    _links(result.get("paths", {}))
    return result
