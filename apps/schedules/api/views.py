"""The schedules API (/api/v1/schedules): parse, call a service or selector, shape the reply."""

from __future__ import annotations

from typing import Any, cast

import orjson
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.clients.models import ApiClient
from apps.core.api import ConveyorAPIView
from apps.core.api_docs import ErrorBody, error_responses, page_parameters
from apps.core.cursors import decode_cursor, next_page_url, page_limit
from apps.core.errors import ValidationFailed
from apps.jobs.api.serializers import JobDoc
from apps.jobs.representation import job_etag, job_location, job_to_dict
from apps.schedules import selectors, services
from apps.schedules.api.serializers import ScheduleCreateDoc, ScheduleDoc, SchedulePageDoc
from apps.schedules.representation import schedule_location, schedule_to_dict


def _client(request: Request) -> ApiClient:
    return cast(ApiClient, request.user)


def _own_schedule(request: Request, schedule_id: str) -> Any:
    return selectors.schedule_get_for_client(client_id=_client(request).pk, schedule_id=schedule_id)


def _json(body: Any, status: int = 200, **headers: str) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def parse_page_query(params: Any) -> tuple[Any, int]:
    errors: dict[str, list[str]] = {}
    limit = page_limit(
        params,
        default=settings.SCHEDULES_LIST_PAGE_SIZE,
        maximum=settings.SCHEDULES_LIST_MAX_PAGE_SIZE,
        errors=errors,
    )
    for name in ("limit", "cursor"):
        if len(params.getlist(name)) > 1:
            errors[name] = ["Give it once."]
    if errors:
        raise ValidationFailed("The query is not valid.", details=errors)
    cursor = decode_cursor(params["cursor"]) if "cursor" in params else None
    return cursor, limit


_PAGE_PARAMETERS = page_parameters(
    default=settings.SCHEDULES_LIST_PAGE_SIZE, maximum=settings.SCHEDULES_LIST_MAX_PAGE_SIZE
)
_CREATE_CONFLICT = (
    "`already_exists`: you have a schedule of this name; `limit_reached`: you have "
    "SCHEDULES_MAX_PER_CLIENT schedules already"
)


class ScheduleCollectionView(ConveyorAPIView):
    rate_limit_groups = {"GET": "list", "POST": "submit"}

    @extend_schema(
        operation_id="schedules_list",
        summary="List your schedules, newest first",
        parameters=_PAGE_PARAMETERS,
        responses={200: SchedulePageDoc, **error_responses(400, 401, 429)},
    )
    def get(self, request: Request) -> Response:
        cursor, limit = parse_page_query(request.query_params)
        schedules, next_pk = selectors.schedules_page_for_client(
            client_id=_client(request).pk, after=cursor, limit=limit
        )
        results = [schedule_to_dict(schedule) for schedule in schedules]
        return Response({"results": results, "next": next_page_url(request, next_pk)})

    @extend_schema(
        operation_id="schedules_create",
        summary="Create a schedule (a recurring job)",
        request=ScheduleCreateDoc,
        responses={
            201: ScheduleDoc,
            **error_responses(400, 401, 413, 415, 429),
            409: OpenApiResponse(response=ErrorBody, description=_CREATE_CONFLICT),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        schedule = services.schedule_create(client=_client(request), data=request.data)
        return _json(schedule_to_dict(schedule), 201, Location=schedule_location(schedule))


class ScheduleDetailView(ConveyorAPIView):
    rate_limit_groups = {"GET": "read", "PATCH": "submit", "DELETE": "submit"}

    @extend_schema(
        operation_id="schedules_get",
        summary="Get a schedule",
        responses={200: ScheduleDoc, **error_responses(401, 404, 429)},
    )
    def get(self, request: Request, schedule_id: str) -> HttpResponse:
        schedule = _own_schedule(request, schedule_id)
        return _json(schedule_to_dict(schedule))

    @extend_schema(
        operation_id="schedules_update",
        summary="Change a schedule",
        request=ScheduleCreateDoc(partial=True),
        responses={
            200: ScheduleDoc,
            **error_responses(400, 401, 404, 413, 415, 429),
            409: OpenApiResponse(
                response=ErrorBody, description="`already_exists`: the new name is taken"
            ),
        },
        description="A change of cron, timezone or enabled moves next_run_at to the first tick "
        "after now (ticks missed while disabled do not fire); `job` is replaced whole.",
    )
    def patch(self, request: Request, schedule_id: str) -> HttpResponse:
        schedule = _own_schedule(request, schedule_id)
        schedule = services.schedule_update(schedule=schedule, data=request.data)
        return _json(schedule_to_dict(schedule))

    @extend_schema(
        operation_id="schedules_delete",
        summary="Delete a schedule (its jobs stay)",
        responses={204: None, **error_responses(401, 404, 429)},
    )
    def delete(self, request: Request, schedule_id: str) -> HttpResponse:
        schedule = _own_schedule(request, schedule_id)
        services.schedule_delete(schedule=schedule)
        return HttpResponse(status=204)


class ScheduleTriggerView(ConveyorAPIView):
    rate_limit_groups = {"POST": "submit"}

    @extend_schema(
        operation_id="schedules_trigger",
        summary="Run a schedule now",
        request=None,
        responses={
            202: JobDoc,
            **error_responses(400, 401, 404, 413, 429),
            409: OpenApiResponse(
                response=ErrorBody,
                description="`invalid_state`: overlap is skip and the previous run is active",
            ),
        },
        description="Submits the schedule's job now, enabled or not (its next tick stays), "
        "with the checks and quotas of POST /jobs; 400 if the job no longer validates.",
    )
    def post(self, request: Request, schedule_id: str) -> HttpResponse:
        schedule = _own_schedule(request, schedule_id)
        job = services.schedule_trigger(schedule=schedule, client=_client(request))
        headers = {"ETag": job_etag(job), "Location": job_location(job)}
        return _json(job_to_dict(job), 202, **headers)
