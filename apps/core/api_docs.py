"""OpenAPI building blocks shared by every endpoint: the error shape, its responses, and the
bearer-key security scheme."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from apps.core.cursors import CURSOR_PATTERN

ErrorBody = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(help_text="Stable snake_case code."),
                "message": serializers.CharField(help_text="For humans; may change."),
                "details": serializers.DictField(
                    help_text="Field path → list of messages, for validation errors."
                ),
                "request_id": serializers.CharField(),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "`validation_error`: bad field, unknown job type, input not matching the schema, "
    "malformed JSON, NUL or invalid UTF-8 anywhere, JSON nested too deep, a path or query "
    "string too long",
    401: "`not_authenticated`: missing, malformed, unknown or revoked API key",
    404: "`not_found`: unknown id, or a job of another client",
    405: "`method_not_allowed`",
    409: "`invalid_state` (e.g. cancel a finished job) or `idempotency_in_progress`",
    413: "`payload_too_large`: body or job input over its limit",
    415: "`unsupported_media_type`: send application/json",
    422: "`idempotency_conflict`: Idempotency-Key reused with a different body",
    429: "`rate_limited` or `quota_exceeded`, with Retry-After",
    431: "`request_header_fields_too_large`: a header field, or all of them, over the limit",
    500: "`internal_error`",
    503: "`service_unavailable`: database or broker down, with Retry-After",
}


# What any request may get, whatever the endpoint: a malformed URL or header (400), no valid
# key (401), a body that is not JSON (415), a rate limit (429), headers too large (431), a
# backing service down (503).
EVERY_OPERATION = (400, 401, 415, 429, 431, 503)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error responses: ``statuses`` and those of EVERY_OPERATION."""
    return {
        status: OpenApiResponse(response=ErrorBody, description=_DESCRIPTIONS[status])
        for status in sorted({*statuses, *EVERY_OPERATION})
    }


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <api key>`` (apps/clients/authentication.py) in the document, so
    that clients generated from it, and the schema fuzzer, send the key."""

    target_class = "apps.clients.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API client's key."}


class JobStatusKeyScheme(OpenApiAuthenticationExtension):
    """The same key for GET /jobs/{id}, whose authentication also prefetches the job's status:
    it requires the ApiKey scheme above and defines no scheme of its own."""

    target_class = "apps.jobs.api.views.JobStatusAuthentication"
    name: Any = []

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        return {ApiKeyScheme.name: []}

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return []


def page_parameters(*, default: int, maximum: int) -> list[OpenApiParameter]:
    """The ``cursor`` and ``limit`` query parameters of a keyset-paginated list."""
    return [
        OpenApiParameter(
            "cursor",
            {"type": "string", "pattern": CURSOR_PATTERN},
            description="From the previous page's `next`.",
        ),
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
            description="Page size.",
        ),
    ]
