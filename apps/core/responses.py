"""The one error shape: {"error": {"code", "message", "details", "request_id"}}."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from apps.core.context import current_request_id
from apps.core.errors import ConveyorError
from apps.core.renderers import dumps


def error_body(error: ConveyorError) -> dict[str, Any]:
    return {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details,
            "request_id": current_request_id(),
        }
    }


def error_headers(error: ConveyorError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(error.retry_after)))
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="conveyor"'
    return headers


def error_http_response(error: ConveyorError) -> HttpResponse:
    """A plain Django response in the error shape, for code paths outside DRF views."""
    response = HttpResponse(
        dumps(error_body(error)), status=error.status, content_type="application/json"
    )
    for name, value in error_headers(error).items():
        response[name] = value
    return response
