"""Request-id middleware (every response carries X-Request-ID, and the id is in context); the
guard that refuses URLs and headers the application cannot handle; the per-request read scope
that decides whether reads may use a replica; the access log line and latency metric."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from urllib.parse import unquote_to_bytes

from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse
from django.utils.functional import LazyObject

from apps.core import errors
from apps.core.access_log import LOGGER as ACCESS_LOGGER
from apps.core.access_log import access_log
from apps.core.context import clean_request_id, request_id_var, request_var
from apps.core.deferred import DeferredResponse
from apps.core.metrics import observe_request
from apps.core.replicas import check, primary_reads, read_scope
from apps.core.request_state import request_state
from apps.core.responses import error_http_response

logger = logging.getLogger("conveyor.replicas")
access_logger = logging.getLogger(ACCESS_LOGGER)
api_logger = logging.getLogger("conveyor.api")

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request_state(request).request_id = request_id
        token = request_id_var.set(request_id)
        request_token = request_var.set(request)
        try:
            response = self.get_response(request)
        finally:
            request_var.reset(request_token)
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


def _bad_text(raw: bytes) -> str | None:
    """Why ``raw`` (a path or a decoded query string) cannot be text for the database, or None."""
    if b"\x00" in raw:
        return "contains the NUL character"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    return None


def request_problem(
    meta: dict[str, object], *, max_url: int, max_header: int, max_headers_total: int
) -> errors.ConveyorError | None:
    """The error for a request whose path, query string or headers Conveyor refuses, or None.

    WSGI hands the query string (still percent-encoded) as latin-1 text, one character per byte.
    The path Django has already decoded, re-percent-encoding invalid UTF-8 (``%FF``), which then
    matches no id: a 404. Each check is a length comparison or a substring test unless the
    query string holds escapes or non-ASCII bytes.
    """
    total = 0
    for name, value in meta.items():
        if not (name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")):
            continue
        header = name.removeprefix("HTTP_").replace("_", "-")
        size = len(name) + len(value) if isinstance(value, str) else 0
        total += size
        if size > max_header:
            return errors.RequestHeaderFieldsTooLarge(
                f"A header field is over {max_header} bytes.",
                details={"headers": [f"{header} is over {max_header} bytes."]},
            )
        if isinstance(value, str) and "\x00" in value:
            return errors.ValidationFailed(
                "A header contains the NUL character.",
                details={"headers": [f"{header} contains NUL."]},
            )
    if total > max_headers_total:
        return errors.RequestHeaderFieldsTooLarge(
            f"The header fields together are over {max_headers_total} bytes.",
            details={"headers": [f"Over {max_headers_total} bytes in all."]},
        )
    for part, text in (("path", meta.get("PATH_INFO")), ("query", meta.get("QUERY_STRING"))):
        if not isinstance(text, str) or not text:
            continue
        if len(text) > max_url:
            message = f"The {part} is over {max_url} bytes."
            return errors.ValidationFailed(message, details={part: [message]})
        if part == "path":
            # Django has decoded the path already (invalid UTF-8 re-percent-encoded).
            problem = "contains the NUL character" if "\x00" in text else None
        elif "%" not in text and text.isascii():
            continue
        else:
            problem = _bad_text(unquote_to_bytes(text.encode("latin-1", "replace")))
        if problem:
            message = f"The {part} {problem}."
            return errors.ValidationFailed(message, details={part: [message]})
    return None


class InputGuardMiddleware:
    """Refuses, in the error shape, a request whose URL or headers Conveyor cannot handle.

    Next after RequestIdMiddleware, so that the refusal carries the request id, and ahead of
    everything that reads the request: a NUL in the path, a NUL or invalid UTF-8 in the query
    string, or a path or query over API_MAX_URL_BYTES, is a 400 ``validation_error`` (PostgreSQL
    text cannot hold NUL; invalid UTF-8 would otherwise be silently replaced and searched for;
    in the path Django re-percent-encodes it, so it matches no id and is a 404); a
    header field over API_MAX_HEADER_BYTES, or all of them over API_MAX_HEADERS_TOTAL_BYTES, is
    a 431 ``request_header_fields_too_large``. gunicorn's own limits (config/gunicorn.py) are set
    above these so that the application, not gunicorn's plain-text page, answers.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from django.conf import settings

        self.get_response = get_response
        self.limits = {
            "max_url": settings.API_MAX_URL_BYTES,
            "max_header": settings.API_MAX_HEADER_BYTES,
            "max_headers_total": settings.API_MAX_HEADERS_TOTAL_BYTES,
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        error = request_problem(request.META, **self.limits)
        if error is not None:
            api_logger.info("refused request: %s", error.message)
            return error_http_response(error)
        return self.get_response(request)


class ReadScopeMiddleware:
    """Gives every request a read scope (apps/core/replicas.py), closed until a view opens it.

    When a safe request that read from a replica fails with a server error, the replica is
    checked at once (a replica found stopped or lagging leaves the rotation) and the request
    runs once more, on the primary: a replica going away, or dropping a connection, costs the
    reads in flight a retry, not an error. A GET changes nothing, so running it twice is
    harmless.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with read_scope() as scope:
            response = self.get_response(request)
            failed = scope.used_replica
        if failed is not None and response.status_code >= 500 and request.method in SAFE:
            state = check(failed)
            logger.warning(
                "a read on replica %s failed (now %s); answering from the primary",
                failed,
                state.state,
            )
            with primary_reads():
                response = self.get_response(request)
        return response


class AccessMiddleware:
    """One log line (``conveyor.access``) and one latency observation per request.

    Outermost in MIDDLEWARE, so the duration covers every other middleware. The route is the
    URL pattern that matched (``api/v1/jobs/<str:job_id>``), never the raw path: bounded label
    values, and no ids or query strings in the metrics. Not installed when both ACCESS_LOG and
    METRICS_ENABLED are off.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from django.conf import settings

        self.get_response = get_response
        self.log = settings.ACCESS_LOG
        self.metrics = settings.METRICS_ENABLED
        if not (self.log or self.metrics):
            raise MiddlewareNotUsed

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = perf_counter()
        response = self.get_response(request)
        if isinstance(response, DeferredResponse):  # a long-poll: logged once it is answered
            response.on_finish(lambda final: self._record(request, final, started))
        else:
            self._record(request, response, started)
        return response

    def _record(self, request: HttpRequest, response: HttpResponse, started: float) -> None:
        seconds = perf_counter() - started
        match = request.resolver_match
        route = match.route if match is not None else "unmatched"
        status = response.status_code
        if self.metrics:
            observe_request(route, request.method or "", status, seconds)
        if self.log and access_logger.isEnabledFor(logging.INFO):
            # DRF puts the authenticated API client on the Django request. The session user of
            # AuthenticationMiddleware is a lazy object: never evaluated here (a session query).
            user = request.__dict__.get("user")
            access_log.add(
                request.method or "",
                route,
                status,
                round(seconds * 1000, 2),
                None if user is None or isinstance(user, LazyObject) else user.pk,
                request_state(request).request_id,
            )
