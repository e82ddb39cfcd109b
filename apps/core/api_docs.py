"""OpenAPI building blocks shared by every endpoint: the error shape and its responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

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
    "malformed JSON",
    401: "`not_authenticated`: missing, malformed, unknown or revoked API key",
    404: "`not_found`: unknown id, or a job of another client",
    405: "`method_not_allowed`",
    409: "`invalid_state` (e.g. cancel a finished job) or `idempotency_in_progress`",
    413: "`payload_too_large`: body or job input over its limit",
    415: "`unsupported_media_type`: send application/json",
    422: "`idempotency_conflict`: Idempotency-Key reused with a different body",
    429: "`rate_limited` or `quota_exceeded`, with Retry-After",
    500: "`internal_error`",
    503: "`service_unavailable`: database or broker down, with Retry-After",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        status: OpenApiResponse(response=ErrorBody, description=_DESCRIPTIONS[status])
        for status in statuses
    }
