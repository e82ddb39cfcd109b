"""Request-id middleware (every response carries X-Request-ID, and the id is in context); the
per-request read scope that decides whether reads may use a replica; the access log line and
latency metric."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter

from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse
from django.utils.functional import LazyObject

from apps.core.access_log import LOGGER as ACCESS_LOGGER
from apps.core.access_log import access_log
from apps.core.context import clean_request_id, request_id_var, request_var
from apps.core.metrics import observe_request
from apps.core.replicas import check, primary_reads, read_scope
from apps.core.request_state import request_state

logger = logging.getLogger("conveyor.replicas")
access_logger = logging.getLogger(ACCESS_LOGGER)

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
        return response
