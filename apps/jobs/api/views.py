"""The jobs API (/api/v1/): views parse the request, call a service or selector, shape the reply."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, cast

import orjson
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.clients.authentication import ApiKeyAuthentication
from apps.clients.models import ApiClient
from apps.core.api import ConveyorAPIView
from apps.core.api_docs import error_responses, page_parameters
from apps.core.cursors import decode_cursor, next_page_url, page_limit
from apps.core.errors import ValidationFailed
from apps.core.replicas import PRIMARY, pin_ttl
from apps.core.request_state import request_state
from apps.core.rfc3339 import parse_rfc3339
from apps.jobs import idempotency, selectors, services, waiting
from apps.jobs.api.serializers import (
    JobBatchDoc,
    JobBatchSubmitDoc,
    JobDoc,
    JobPageDoc,
    JobSubmitDoc,
    JobTypeListDoc,
)
from apps.jobs.idempotency import StoredResponse
from apps.jobs.models import Job, JobStatus
from apps.jobs.registry import NAME_PATTERN, QUEUE_PATTERN, all_job_types, rate_limits
from apps.jobs.representation import job_etag, job_location, job_to_dict
from apps.jobs.status_cache import cache_jobs, decode, job_cache_key
from apps.jobs.submission import METADATA_KEY, METADATA_VALUE_MAX

JOB_CACHE_CONTROL = "private, no-cache"
# A submission answered with an existing job (unique jobs, API.md).
DUPLICATE_HEADER = "Conveyor-Duplicate"


def _client(request: Request) -> ApiClient:
    """The authenticated API client (ApiKeyAuthentication puts it in request.user)."""
    return cast(ApiClient, request.user)


def _request_id(request: Request) -> str:
    return request_state(request).request_id or ""


def _job_response(job: Any, status: int = 200, **headers: str) -> HttpResponse:
    # Rendered here rather than through DRF's renderer: a job is always the same JSON object.
    return HttpResponse(
        orjson.dumps(job_to_dict(job)),
        status=status,
        content_type="application/json",
        headers={"ETag": job_etag(job), "Cache-Control": JOB_CACHE_CONTROL, **headers},
    )


def _idempotent(
    request: Request,
    client: ApiClient,
    data: Any,
    submit: Callable[..., StoredResponse],
) -> HttpResponse:
    """Run ``submit`` once per Idempotency-Key (when the header is sent) and answer with its
    stored response; replays carry ``Idempotent-Replayed: true``."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        response = submit()
    else:
        key = idempotency.validate_key(key)
        fingerprint = idempotency.request_hash(request.method or "POST", request.path, data)
        response = idempotency.run_once(
            client=client, key=key, fingerprint=fingerprint, produce=lambda: submit(key)
        )
    http = HttpResponse(response.body, status=response.status, content_type="application/json")
    if response.location:
        http["Location"] = response.location
    if response.etag:
        http["ETag"] = response.etag
    if response.replayed:
        http["Idempotent-Replayed"] = "true"
    if response.duplicate:
        http[DUPLICATE_HEADER] = "true"
    return http


# --- Query parsing for the list ---------------------------------------------------------------


# Filter values are bounded by what the columns can hold; a longer value cannot match anything.
TYPE_MAX_LENGTH = Job._meta.get_field("type").max_length or 100
QUEUE_MAX_LENGTH = Job._meta.get_field("queue").max_length or 64
STATUSES = frozenset(JobStatus.values)
_TYPE_NAME = re.compile(NAME_PATTERN)
_QUEUE_NAME = re.compile(QUEUE_PATTERN)


def _type_name(item: str) -> bool:
    return len(item) <= TYPE_MAX_LENGTH and _TYPE_NAME.fullmatch(item) is not None


def _queue_name(item: str) -> bool:
    return len(item) <= QUEUE_MAX_LENGTH and _QUEUE_NAME.fullmatch(item) is not None


def _items(
    values: list[str], name: str, errors: dict[str, list[str]], *, valid: Callable[[str], bool]
) -> list[str]:
    """The items of a list filter, comma-separated or the parameter repeated (``status=a,b`` or
    ``status=a&status=b``). Every item must be one that can match (no empty ones: ``status=`` and
    ``a,,b`` are refused), as the document says; ``name`` is refused if any is not."""
    items = [part for value in values for part in value.split(",")]
    if bad := sorted({item for item in items if not valid(item)}):
        shown = ", ".join(repr(item) for item in bad[:5])
        errors[name] = [f"Not a {name} that can match: {shown}."]
    return items


def _parse_time(value: str | None, name: str, errors: dict[str, list[str]]) -> datetime | None:
    if value is None:
        return None
    parsed = parse_rfc3339(value)
    if parsed is None:
        errors[name] = ["Must be an RFC 3339 date-time with a timezone."]
    return parsed


# A schedule id as the API writes it: the hyphenated form only (uuid.UUID also takes braces,
# a urn: prefix or no hyphens, which the document's format does not).
_UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _parse_uuid(value: str | None, name: str, errors: dict[str, list[str]]) -> uuid.UUID | None:
    if value is None:
        return None
    if re.fullmatch(_UUID_PATTERN, value) is None:
        errors[name] = ["Must be an id (a hyphenated UUID)."]
        return None
    return uuid.UUID(value)


def parse_list_query(params: Any) -> tuple[selectors.JobListFilters, uuid.UUID | None, int]:
    errors: dict[str, list[str]] = {}
    statuses = _items(params.getlist("status"), "status", errors, valid=STATUSES.__contains__)
    metadata = {}
    for name, values in params.lists():
        # `metadata` is a deepObject: every parameter named metadata, or metadata[ anything,
        # is a filter, so a malformed one (metadata[]=v, metadata=v, metadata[k] twice) is
        # refused, not ignored.
        if name != "metadata" and not name.startswith("metadata["):
            continue
        key, value = name[9:-1] if name.endswith("]") else "", values[-1]
        if not METADATA_KEY.fullmatch(key):
            errors[name] = ["Write metadata[key]=value; keys are 1-64 of A-Z a-z 0-9 _ . -"]
        elif len(values) > 1:
            errors[name] = ["One value per key."]
        elif len(value) > METADATA_VALUE_MAX:
            errors[name] = [f"Values are at most {METADATA_VALUE_MAX} characters."]
        metadata[key] = value
    limit = page_limit(
        params,
        default=settings.JOBS_LIST_PAGE_SIZE,
        maximum=settings.JOBS_LIST_MAX_PAGE_SIZE,
        errors=errors,
    )
    filters = selectors.JobListFilters(
        statuses=statuses,
        types=_items(params.getlist("type"), "type", errors, valid=_type_name),
        queues=_items(params.getlist("queue"), "queue", errors, valid=_queue_name),
        metadata=metadata,
        created_after=_parse_time(params.get("created_after"), "created_after", errors),
        created_before=_parse_time(params.get("created_before"), "created_before", errors),
        schedule_id=_parse_uuid(params.get("schedule_id"), "schedule_id", errors),
    )
    for name in ("limit", "cursor", "created_after", "created_before", "schedule_id"):
        if len(params.getlist(name)) > 1:
            errors[name] = ["Give it once."]  # one value, as the document says
    if errors:
        raise ValidationFailed("The query is not valid.", details=errors)
    cursor = decode_cursor(params["cursor"]) if "cursor" in params else None
    return filters, cursor, limit


def _comma_list(items: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": items, "description": description}


# Every constraint parse_list_query enforces, stated so that a schema-driven client or fuzzer
# sends what the server takes (tests/e2e/test_schema_fuzz.py holds the two to each other).
_LIST_PARAMETERS = [
    OpenApiParameter(
        "status",
        _comma_list({"type": "string", "enum": list(JobStatus.values)}, "Statuses."),
        style="form",
        explode=False,
        description="Comma-separated statuses (or the parameter repeated); no empty items.",
    ),
    OpenApiParameter(
        "type",
        _comma_list(
            {"type": "string", "pattern": f"^{NAME_PATTERN}$", "maxLength": TYPE_MAX_LENGTH},
            "Job types.",
        ),
        style="form",
        explode=False,
        description="Comma-separated job type names (or the parameter repeated).",
    ),
    OpenApiParameter(
        "queue",
        _comma_list(
            {"type": "string", "pattern": f"^{QUEUE_PATTERN}$", "maxLength": QUEUE_MAX_LENGTH},
            "Queues.",
        ),
        style="form",
        explode=False,
        description="Comma-separated queue names (or the parameter repeated).",
    ),
    OpenApiParameter(
        "metadata",
        {
            "type": "object",
            "propertyNames": {"pattern": f"^{METADATA_KEY.pattern}$"},
            "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX},
        },
        style="deepObject",
        explode=True,
        description="`metadata[key]=value`: jobs whose metadata has key = value; several keys "
        "narrow the list, each key at most once.",
    ),
    OpenApiParameter(
        "created_after",
        {"type": "string", "format": "date-time"},
        description="RFC 3339 date-time with an offset.",
    ),
    OpenApiParameter(
        "created_before",
        {"type": "string", "format": "date-time"},
        description="RFC 3339 date-time with an offset.",
    ),
    OpenApiParameter(
        "schedule_id",
        {"type": "string", "format": "uuid", "pattern": _UUID_PATTERN},
        description="Jobs fired by this schedule (its id, hyphenated). Another client's "
        "schedule lists nothing; a deleted schedule's jobs stay listed.",
    ),
    *page_parameters(
        default=settings.JOBS_LIST_PAGE_SIZE, maximum=settings.JOBS_LIST_MAX_PAGE_SIZE
    ),
]
_IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "pattern": f"^{idempotency.KEY_PATTERN}$", "minLength": 1, "maxLength": 255},
    location=OpenApiParameter.HEADER,
    description="1-255 printable ASCII characters, no spaces. Replays the first response for "
    "24 h when the same key and body are sent again.",
)
_WAIT_QUERY = OpenApiParameter(
    "wait",
    waiting.WAIT_SCHEMA,
    description="Long-poll, with If-None-Match: answer as soon as the job's ETag differs from "
    "it (200), or 304 after this many seconds. Without If-None-Match the job is answered at once.",
)
_PREFER_HEADER = OpenApiParameter(
    "Prefer",
    {"type": "string", "pattern": "^wait=([1-9]|[1-5][0-9]|60)$"},
    location=OpenApiParameter.HEADER,
    description="`wait=N` (1-60): answer when the job is terminal (200, with "
    "`Preference-Applied: wait=N`), or with the usual 202 after N seconds. Other preferences "
    "are ignored (RFC 7240).",
)


# --- Views ------------------------------------------------------------------------------------


class JobCollectionView(ConveyorAPIView):
    rate_limit_groups = {"GET": "list", "POST": "submit"}
    replica_reads = True

    @extend_schema(
        operation_id="jobs_list",
        summary="List your jobs, newest first",
        parameters=_LIST_PARAMETERS,
        responses={200: JobPageDoc, **error_responses(400, 401, 429)},
    )
    def get(self, request: Request) -> Response:
        filters, cursor, limit = parse_list_query(request.query_params)
        jobs, next_pk = selectors.jobs_page_for_client(
            client_id=_client(request).pk, filters=filters, after=cursor, limit=limit
        )
        results = selectors.refine_wait_reasons(
            [job_to_dict(job) for job in jobs], client=_client(request)
        )
        return Response({"results": results, "next": next_page_url(request, next_pk)})

    @extend_schema(
        operation_id="jobs_submit",
        summary="Submit a job",
        request=JobSubmitDoc,
        parameters=[_IDEMPOTENCY_HEADER, _PREFER_HEADER],
        responses={
            202: JobDoc,
            200: OpenApiResponse(
                JobDoc,
                description="With Prefer: wait=N, the job once terminal (Preference-Applied). "
                "For a unique job's duplicate (header Conveyor-Duplicate: true, answered at once, "
                "Prefer or not): nothing was created; this is the job with the same unique_key.",
            ),
            **error_responses(400, 401, 409, 413, 415, 422, 429, 503),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        client, data = _client(request), request.data
        wait = waiting.parse_prefer_wait(request.headers.get("Prefer"))

        def submit(key: str | None = None) -> StoredResponse:
            job = services.job_submit(
                client=client, data=data, request_id=_request_id(request), idempotency_key=key
            )
            if job.duplicate:
                body = orjson.dumps(job_to_dict(job))
                return StoredResponse(
                    200, body, job_location(job), duplicate=True, etag=job_etag(job)
                )
            body = orjson.dumps(job_to_dict(job))
            return StoredResponse(202, body, job_location(job), etag=job_etag(job))

        response = _idempotent(request, client, data, submit)
        if wait is None or response.status_code != 202:
            return response
        return _wait_until_terminal(client, response, wait)


def _wait_until_terminal(client: ApiClient, accepted: HttpResponse, seconds: int) -> HttpResponse:
    """``Prefer: wait=N`` on a submission: the job once terminal (200), else the usual 202 (with
    the job as it then is) after N seconds."""
    job_id = orjson.loads(accepted.content)["id"]
    headers = {"Preference-Applied": f"wait={seconds}", "Location": accepted["Location"]}
    if "Idempotent-Replayed" in accepted:
        headers["Idempotent-Replayed"] = accepted["Idempotent-Replayed"]

    def respond(status: int, state: waiting.State) -> HttpResponse:
        version, body = state
        etag = {"ETag": f'"{version}"'} if version else {}
        return HttpResponse(
            body, status=status, content_type="application/json", headers={**headers, **etag}
        )

    return waiting.begin(
        waiting.JobWait(
            client_id=client.pk,
            cache_key=job_cache_key(client.pk, selectors.parse_job_id(job_id)),
            seconds=seconds,
            read=partial(_job_state, client, job_id),
            reads_db=partial(_needs_wait_reason, client=client),
            done=waiting.is_terminal,
            answer=partial(respond, 200),
            timeout=partial(respond, 202),
        ),
        (0, accepted.content),  # version unknown (a replay's job may have moved on): 0
    )


class JobBatchView(ConveyorAPIView):
    rate_limit_groups = {"POST": "submit"}

    @extend_schema(
        operation_id="jobs_submit_batch",
        summary="Submit up to 1000 jobs at once (all or nothing)",
        request=JobBatchSubmitDoc,
        parameters=[_IDEMPOTENCY_HEADER],
        responses={202: JobBatchDoc, **error_responses(400, 401, 409, 413, 415, 422, 429, 503)},
    )
    def post(self, request: Request) -> HttpResponse:
        client, data = _client(request), request.data

        def submit(key: str | None = None) -> StoredResponse:
            jobs = services.job_submit_batch(
                client=client, data=data, request_id=_request_id(request), idempotency_key=key
            )
            return StoredResponse(202, orjson.dumps({"jobs": [job_to_dict(job) for job in jobs]}))

        return _idempotent(request, client, data, submit)


class JobStatusAuthentication(ApiKeyAuthentication):
    """Authenticates and fetches the job's cached status in the same cache round trip."""

    def prefetch_keys(self, request: Any) -> Any:
        job_id = selectors.parse_job_id(request.parser_context["kwargs"].get("job_id"))
        if job_id is None:
            return None
        return lambda client_id: [job_cache_key(client_id, job_id)]


class JobDetailView(ConveyorAPIView):
    authentication_classes = [JobStatusAuthentication]
    rate_limit_groups = {"GET": "read"}
    replica_reads = True

    @extend_schema(
        operation_id="jobs_get",
        summary="Get a job's status",
        parameters=[_WAIT_QUERY],
        responses={200: JobDoc, 304: None, **error_responses(400, 401, 404, 429, 503)},
    )
    def get(self, request: Request, job_id: str) -> HttpResponse:
        wait = waiting.parse_wait_query(request.query_params)
        client = _client(request)
        prefetched = request_state(request).prefetched  # JobStatusAuthentication's
        state = _job_state(client, job_id, prefetched[0] if prefetched else None)
        if_none_match = request.META.get("HTTP_IF_NONE_MATCH")
        respond = partial(_detail_response, if_none_match=if_none_match)
        if wait is None or not _etag_matches(if_none_match, f'"{state[0]}"'):
            return respond(state)
        return waiting.begin(
            waiting.JobWait(
                client_id=client.pk,
                cache_key=job_cache_key(client.pk, selectors.parse_job_id(job_id)),
                seconds=wait,
                read=partial(_job_state, client, job_id),
                reads_db=partial(_needs_wait_reason, client=client),
                done=lambda state: not _etag_matches(if_none_match, f'"{state[0]}"'),
                answer=respond,
                timeout=respond,
            ),
            state,
        )


def _job_state(client: ApiClient, job_id: str, cached: bytes | None) -> waiting.State:
    """The job's version and body: from its status-cache entry, else from the database."""
    if cached is not None:
        version, body = decode(cached)
    else:
        job = selectors.job_get_for_client(client_id=client.pk, job_id=job_id)
        version, body = job.version, orjson.dumps(job_to_dict(job))
        # A replica's copy may be seconds old: cached briefly, so that a lost write-through
        # can never leave it there for long (a newer version replaces it anyway).
        cache_jobs([job], ttl=None if job._state.db == PRIMARY else pin_ttl())
    return version, _with_wait_reason(body, client)


def _detail_response(state: waiting.State, *, if_none_match: str | None) -> HttpResponse:
    version, body = state
    etag = f'"{version}"'
    headers = {"ETag": etag, "Cache-Control": JOB_CACHE_CONTROL}
    if _etag_matches(if_none_match, etag):
        return HttpResponse(status=304, headers=headers)
    return HttpResponse(body, content_type="application/json", headers=headers)


def _rate_limited_type(body: bytes) -> bool:
    rates = rate_limits()
    return bool(rates) and any(f'"type":"{name}"'.encode() in body for name in rates)


def _needs_wait_reason(body: bytes, client: ApiClient) -> bool:
    """Whether a queued job's wait_reason must be told on read (a database read): only when its
    client's cap or its concurrency key could be what holds it (selectors.refine_wait_reasons)."""
    return b'"wait_reason":"capacity"' in body and not (
        client.max_running_jobs is None
        and b'"concurrency_key":null' in body
        and not _rate_limited_type(body)
    )


def _with_wait_reason(body: bytes, client: ApiClient) -> bytes:
    """The job's body with its wait_reason told on read, when it needs to be."""
    if not _needs_wait_reason(body, client):
        return body
    [job] = selectors.refine_wait_reasons([orjson.loads(body)], client=client)
    return orjson.dumps(job)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in candidates or etag in candidates


class JobCancelView(ConveyorAPIView):
    rate_limit_groups = {"POST": "submit"}

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a job",
        request=None,
        responses={
            200: JobDoc,
            202: JobDoc,
            **error_responses(401, 404, 409, 429),
        },
        description="A waiting job is canceled at once (200); a running one gets "
        "cancel_requested and its worker stops it (202).",
    )
    def post(self, request: Request, job_id: str) -> HttpResponse:
        job = selectors.job_get_for_client(client_id=_client(request).pk, job_id=job_id)
        job, finished = services.job_cancel(job=job)
        return _job_response(job, 200 if finished else 202)


class JobRetryView(ConveyorAPIView):
    rate_limit_groups = {"POST": "submit"}

    @extend_schema(
        operation_id="jobs_retry",
        summary="Run a failed or canceled job again",
        request=None,
        responses={202: JobDoc, **error_responses(401, 404, 409, 429)},
    )
    def post(self, request: Request, job_id: str) -> HttpResponse:
        job = selectors.job_get_for_client(client_id=_client(request).pk, job_id=job_id)
        job = services.job_retry(job=job, client=_client(request))
        return _job_response(job, 202, Location=job_location(job))


class JobTypeListView(ConveyorAPIView):
    rate_limit_groups = {"GET": "read"}

    @extend_schema(
        operation_id="job_types_list",
        summary="List the registered job types and their input schemas",
        responses={200: JobTypeListDoc, **error_responses(401, 429)},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "results": [
                    {
                        "name": jt.name,
                        "description": jt.description,
                        "queue": jt.queue,
                        "timeout_seconds": jt.timeout_seconds,
                        "max_timeout_seconds": jt.max_timeout_seconds,
                        "max_attempts": jt.max_attempts,
                        "max_attempts_limit": jt.max_attempts_limit,
                        "input_schema": jt.input_schema,
                    }
                    for jt in all_job_types()
                ]
            }
        )
