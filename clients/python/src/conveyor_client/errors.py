"""Errors as exceptions named after the API's stable codes (API.md, "Conventions").

Every error answer has one shape, ``{"error": {"code", "message", "details", "request_id"}}``;
:func:`error_from_response` turns it into the exception class of its ``code``. A code this client
does not know yet becomes the class of its HTTP status (``ConflictError`` for any 409, …), so a
newer server's codes still land in a sensible ``except``.
"""

from __future__ import annotations

from typing import Any


class ConveyorError(Exception):
    """Base of every error this client raises. ``code`` is the API's snake_case code."""

    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.details: dict[str, Any] = details or {}
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.details:
            text += f" {self.details}"
        return text


class ConnectionFailed(ConveyorError):
    """The server could not be reached (or stopped answering) after every retry."""

    code = "connection_failed"


class WaitTimeout(ConveyorError):
    """``wait()`` gave up before the job reached a terminal status. ``job`` is its last state."""

    code = "wait_timeout"

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message)
        self.job = job


class WebhookVerificationError(ConveyorError):
    """A webhook's signature, timestamp or body did not verify."""

    code = "webhook_verification_failed"


class BadRequest(ConveyorError):
    code = "bad_request"


class ValidationError(BadRequest):
    code = "validation_error"


class NotAuthenticated(ConveyorError):
    code = "not_authenticated"


class PermissionDenied(ConveyorError):
    code = "permission_denied"


class NotFound(ConveyorError):
    code = "not_found"


class MethodNotAllowed(ConveyorError):
    code = "method_not_allowed"


class Conflict(ConveyorError):
    """Any 409."""

    code = "conflict"


class InvalidState(Conflict):
    code = "invalid_state"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"


class AlreadyExists(Conflict):
    code = "already_exists"


class LimitReached(Conflict):
    code = "limit_reached"


class PayloadTooLarge(ConveyorError):
    code = "payload_too_large"


class UnsupportedMediaType(ConveyorError):
    code = "unsupported_media_type"


class IdempotencyConflict(ConveyorError):
    code = "idempotency_conflict"


class RateLimited(ConveyorError):
    """Any 429; ``retry_after`` says when to come back."""

    code = "rate_limited"


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"


class ServerError(ConveyorError):
    code = "internal_error"


class InternalError(ServerError):
    code = "internal_error"


class ServiceUnavailable(ServerError):
    code = "service_unavailable"


BY_CODE: dict[str, type[ConveyorError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        NotAuthenticated,
        PermissionDenied,
        NotFound,
        MethodNotAllowed,
        InvalidState,
        IdempotencyInProgress,
        AlreadyExists,
        LimitReached,
        PayloadTooLarge,
        UnsupportedMediaType,
        IdempotencyConflict,
        RateLimited,
        QuotaExceeded,
        InternalError,
        ServiceUnavailable,
    )
}
BY_CODE["forbidden"] = PermissionDenied

BY_STATUS: dict[int, type[ConveyorError]] = {
    400: BadRequest,
    401: NotAuthenticated,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: IdempotencyConflict,
    429: RateLimited,
    503: ServiceUnavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the API sends an integer; an HTTP date is not used)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def error_from_response(
    status: int, body: bytes, headers: Any, *, fallback_message: str = ""
) -> ConveyorError:
    """The exception for an error answer: by ``code`` when the body has the error shape, else
    by HTTP status (a proxy's HTML 502 still becomes a ServerError with its status)."""
    import json

    code = message = None
    details: dict[str, Any] = {}
    request_id = headers.get("X-Request-ID")
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        if isinstance(error.get("details"), dict):
            details = error["details"]
        request_id = error.get("request_id") or request_id
    cls = (
        BY_CODE.get(code or "")
        or BY_STATUS.get(status)
        or (ServerError if status >= 500 else ConveyorError)
    )
    return cls(
        message or fallback_message or f"HTTP {status}",
        code=code or cls.code,
        status=status,
        details=details,
        request_id=request_id,
        retry_after=parse_retry_after(headers.get("Retry-After")),
    )
