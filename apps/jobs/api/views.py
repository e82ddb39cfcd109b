"""The jobs API (/api/v1/): views parse the request, call a service or selector, shape the reply."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import orjson
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.clients.authentication import ApiKeyAuthentication
from apps.clients.models import ApiClient
from apps.core.api import ConveyorAPIView
from apps.core.api_docs import error_responses
from apps.core.cursors import decode_cursor, encode_cursor
from apps.core.errors import ValidationFailed
from apps.core.replicas import PRIMARY, pin_ttl
from apps.core.request_state import request_state
from apps.jobs import idempotency, selectors, services
from apps.jobs.api.serializers import (
    JobBatchDoc,
    JobBatchSubmitDoc,
    JobDoc,
    JobPageDoc,
    JobSubmitDoc,
    JobTypeListDoc,
)
from apps.jobs.idempotency import StoredResponse
from apps.jobs.models import JobStatus
from apps.jobs.registry import all_job_types, rate_limits
from apps.jobs.representation import job_etag, job_location, job_to_dict
from apps.jobs.status_cache import cache_jobs, decode, job_cache_key

JOB_CACHE_CONTROL = "private, no-cache"


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
    if response.replayed:
        http["Idempotent-Replayed"] = "true"
    return http


# --- Query parsing for the list ---------------------------------------------------------------


def _split(values: list[str]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


def _parse_time(value: str | None, name: str, errors: dict[str, list[str]]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors[name] = ["Must be an RFC 3339 date-time with a timezone."]
        return None
    return parsed


def parse_list_query(params: Any) -> tuple[selectors.JobListFilters, uuid.UUID | None, int]:
    errors: dict[str, list[str]] = {}
    statuses = _split(params.getlist("status"))
    if bad := sorted(set(statuses) - set(JobStatus.values)):
        errors["status"] = [f"Unknown status {', '.join(bad)}."]
    metadata = {}
    for name, value in params.items():
        if name.startswith("metadata[") and name.endswith("]") and len(name) > 10:
            metadata[name[9:-1]] = value
    limit = settings.JOBS_LIST_PAGE_SIZE
    if params.get("limit"):
        try:
            limit = int(params["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= settings.JOBS_LIST_MAX_PAGE_SIZE:
            errors["limit"] = [f"Must be an integer from 1 to {settings.JOBS_LIST_MAX_PAGE_SIZE}."]
    filters = selectors.JobListFilters(
        statuses=statuses,
        types=_split(params.getlist("type")),
        queues=_split(params.getlist("queue")),
        metadata=metadata,
        created_after=_parse_time(params.get("created_after"), "created_after", errors),
        created_before=_parse_time(params.get("created_before"), "created_before", errors),
    )
    if errors:
        raise ValidationFailed("The query is not valid.", details=errors)
    cursor = decode_cursor(params["cursor"]) if params.get("cursor") else None
    return filters, cursor, limit


_LIST_PARAMETERS = [
    OpenApiParameter("status", str, description="Comma-separated statuses."),
    OpenApiParameter("type", str, description="Comma-separated job types."),
    OpenApiParameter("queue", str, description="Comma-separated queues."),
    OpenApiParameter(
        "metadata[key]", str, description="Jobs whose metadata has key = value (repeatable)."
    ),
    OpenApiParameter("created_after", datetime),
    OpenApiParameter("created_before", datetime),
    OpenApiParameter("cursor", str, description="From the previous page's `next`."),
    OpenApiParameter("limit", int, description="Page size, 1-200 (default 50)."),
]
_IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    description="Replays the first response for 24 h when the same key and body are sent again.",
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
        next_url = None
        if next_pk is not None:
            query = request.query_params.copy()
            query["cursor"] = encode_cursor(next_pk)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        results = selectors.refine_wait_reasons(
            [job_to_dict(job) for job in jobs], client=_client(request)
        )
        return Response({"results": results, "next": next_url})

    @extend_schema(
        operation_id="jobs_submit",
        summary="Submit a job",
        request=JobSubmitDoc,
        parameters=[_IDEMPOTENCY_HEADER],
        responses={202: JobDoc, **error_responses(400, 401, 409, 413, 415, 422, 429, 503)},
    )
    def post(self, request: Request) -> HttpResponse:
        client, data = _client(request), request.data

        def submit(key: str | None = None) -> StoredResponse:
            job = services.job_submit(
                client=client, data=data, request_id=_request_id(request), idempotency_key=key
            )
            return StoredResponse(202, orjson.dumps(job_to_dict(job)), job_location(job))

        return _idempotent(request, client, data, submit)


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
        responses={200: JobDoc, 304: None, **error_responses(401, 404, 429)},
    )
    def get(self, request: Request, job_id: str) -> HttpResponse:
        prefetched = request_state(request).prefetched  # JobStatusAuthentication's
        cached = prefetched[0] if prefetched else None
        if cached is not None:
            version, body = decode(cached)
        else:
            job = selectors.job_get_for_client(client_id=_client(request).pk, job_id=job_id)
            version, body = job.version, orjson.dumps(job_to_dict(job))
            # A replica's copy may be seconds old: cached briefly, so that a lost write-through
            # can never leave it there for long (a newer version replaces it anyway).
            cache_jobs([job], ttl=None if job._state.db == PRIMARY else pin_ttl())
        body = _with_wait_reason(body, _client(request))
        etag = f'"{version}"'
        headers = {"ETag": etag, "Cache-Control": JOB_CACHE_CONTROL}
        if _etag_matches(request.META.get("HTTP_IF_NONE_MATCH"), etag):
            return HttpResponse(status=304, headers=headers)
        return HttpResponse(body, content_type="application/json", headers=headers)


def _rate_limited_type(body: bytes) -> bool:
    rates = rate_limits()
    return bool(rates) and any(f'"type":"{name}"'.encode() in body for name in rates)


def _with_wait_reason(body: bytes, client: ApiClient) -> bytes:
    """A queued job's body with its wait_reason told on read, parsed only when its client's cap
    or its concurrency key could be what holds it (selectors.refine_wait_reasons)."""
    if b'"wait_reason":"capacity"' not in body or (
        client.max_running_jobs is None
        and b'"concurrency_key":null' in body
        and not _rate_limited_type(body)
    ):
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
