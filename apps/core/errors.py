"""Typed domain errors. Each carries the HTTP status and the stable code of ../shared/API.md.

Services raise these; the one exception handler (apps.core.exception_handler) renders them. They
know nothing of HTTP beyond the status number they map to.
"""

from __future__ import annotations

from typing import Any


class ConveyorError(Exception):
    status = 500
    code = "internal_error"
    default_message = "An internal error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(self.message)


class ValidationFailed(ConveyorError):
    status = 400
    code = "validation_error"
    default_message = "The request is not valid."


class NotAuthenticated(ConveyorError):
    status = 401
    code = "not_authenticated"
    default_message = "A valid API key is required (Authorization: Bearer <key>)."


class Forbidden(ConveyorError):
    status = 403
    code = "forbidden"
    default_message = "Not allowed from here."


class NotFound(ConveyorError):
    status = 404
    code = "not_found"
    default_message = "Not found."


class InvalidState(ConveyorError):
    status = 409
    code = "invalid_state"
    default_message = "The job is not in a state that allows this."


class IdempotencyInProgress(ConveyorError):
    status = 409
    code = "idempotency_in_progress"
    default_message = "A request with this Idempotency-Key is still being processed."


class PayloadTooLarge(ConveyorError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class UnsupportedMediaType(ConveyorError):
    status = 415
    code = "unsupported_media_type"
    default_message = "Send JSON with Content-Type: application/json."


class RequestHeaderFieldsTooLarge(ConveyorError):
    status = 431
    code = "request_header_fields_too_large"
    default_message = "A request header, or all of them together, is too large."


class IdempotencyConflict(ConveyorError):
    status = 422
    code = "idempotency_conflict"
    default_message = "This Idempotency-Key was used with a different request body."


class RateLimited(ConveyorError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests."


class QuotaExceeded(ConveyorError):
    status = 429
    code = "quota_exceeded"
    default_message = "Too many active jobs."


class ServiceUnavailable(ConveyorError):
    status = 503
    code = "service_unavailable"
    default_message = "A backing service is unavailable; retry shortly."
