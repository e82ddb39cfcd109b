"""Request-id middleware (every response carries X-Request-ID, and the id is in context) and
the per-request read scope that decides whether reads may use a replica."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.core.context import clean_request_id, request_id_var
from apps.core.replicas import check, primary_reads, read_scope

logger = logging.getLogger("conveyor.replicas")

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
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
