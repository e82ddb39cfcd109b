"""The one DRF exception handler: every failure becomes the error shape of API.md.

Expected failures (domain errors, DRF's own 4xx) render with their code. The database refusing
a value that came from the client (``DataError``: a string it cannot store, a number out of its
range) and Django refusing a suspicious request (too many query fields) are the client's fault:
400 ``validation_error``, logged at info, not reported to Sentry. Anything else is logged
with its traceback, sent to Sentry, and answered as a bare ``internal_error``: no exception text,
no stack, nothing internal in the body.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from kombu.exceptions import OperationalError as BrokerError
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core import errors
from apps.core.responses import error_body, error_headers

logger = logging.getLogger("conveyor.api")


def flatten_details(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field.sub.0.name": ["message", ...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_details(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            flat[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    flat.update(
                        flatten_details(item, f"{prefix}.{index}" if prefix else str(index))
                    )
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def to_conveyor_error(exc: Exception) -> errors.ConveyorError | None:
    """The domain error for an expected exception, or None for a genuine bug."""
    if isinstance(exc, errors.ConveyorError):
        return exc
    if isinstance(exc, drf.ValidationError):
        return errors.ValidationFailed(details=flatten_details(exc.detail))
    if isinstance(exc, drf.ParseError):
        return errors.ValidationFailed(str(exc.detail), details={"body": [str(exc.detail)]})
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        message = None if isinstance(exc, drf.NotAuthenticated) else str(exc.detail)
        return errors.NotAuthenticated(message)
    if isinstance(exc, Http404 | drf.NotFound | PermissionDenied | drf.PermissionDenied):
        # A permission failure on an object answers like a missing one: no existence leak.
        return errors.NotFound()
    if isinstance(exc, drf.MethodNotAllowed):
        error = errors.ConveyorError(str(exc.detail))
        error.status, error.code = 405, "method_not_allowed"
        return error
    if isinstance(exc, drf.UnsupportedMediaType):
        return errors.UnsupportedMediaType(
            f"Unsupported Content-Type {exc.detail!s}; send application/json."
        )
    if isinstance(exc, drf.Throttled):
        return errors.RateLimited(retry_after=int(getattr(exc, "wait", None) or 1))
    if isinstance(exc, RequestDataTooBig):
        return errors.PayloadTooLarge()
    if isinstance(exc, DataError):
        logger.info("the database refused a client's value: %s", exc)
        message = "A value in the request cannot be stored or searched for."
        return errors.ValidationFailed(message, details={"request": [message]})
    if isinstance(exc, SuspiciousOperation):
        logger.info("suspicious request refused: %s", type(exc).__name__)
        return errors.ValidationFailed(
            "The request is not valid.", details={"request": [type(exc).__name__]}
        )
    if isinstance(exc, OperationalError | InterfaceError | BrokerError):
        logger.warning("backing service unavailable: %s", type(exc).__name__, exc_info=exc)
        return errors.ServiceUnavailable(retry_after=5)
    if isinstance(exc, drf.APIException):
        error = errors.ConveyorError(str(exc.detail))
        error.status, error.code = exc.status_code, str(exc.default_code)
        return error
    return None


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response:
    error = to_conveyor_error(exc)
    if error is None:
        logger.error("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        sentry_sdk.capture_exception(exc)
        error = errors.ConveyorError()
    return Response(error_body(error), status=error.status, headers=error_headers(error))
