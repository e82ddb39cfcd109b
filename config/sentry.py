"""Sentry: error reporting for the web, the workers and the scheduler (enabled by SENTRY_DSN).

Called from config/settings.py, so every process that loads the settings reports. What an event
may carry is decided here, not left to the SDK's defaults:

- operational errors (our 4xx ``ConveyorError``s, DRF's 4xx, 404/403, bad Host headers) are not
  reported: they are the client's mistake, not ours;
- every event is tagged with the request id (and, in a worker, the job id and type): the id
  that the client saw in ``X-Request-ID`` and that the job row stores;
- nothing secret leaves the process: no local variables (a handler's ``input`` would be one),
  no request bodies (job inputs arrive in them), no cookies, no Authorization or signature
  headers; API keys (``cvk_…``), webhook secrets (``whsec_…``) and bearer tokens are masked in
  every string of the event; and in a worker the values of the running job's input fields that
  its type marks sensitive (``JobType.sensitive_input_fields``) are replaced wherever they
  appear (an exception message that quotes them, a log message).
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from apps.core.context import current_job, current_request, current_request_id
from apps.core.logs import FILTERED, redact

_SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-csrftoken",
        "webhook-signature",
    }
)


@cache
def project_version() -> str:
    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def init_sentry(
    *,
    dsn: str,
    environment: str,
    release: str | None = None,
    traces_sample_rate: float = 0.0,
    instrument_requests: bool = True,
) -> None:
    """Start the SDK with the Django, Celery and Redis integrations and Conveyor's scrubbing.

    ``instrument_requests=False`` (SENTRY_INSTRUMENT_REQUESTS) leaves out the Django and Redis
    integrations, whose per-request work (scopes, sessions, wrapped middleware, a breadcrumb
    and span per Redis command) about doubles the CPU of a cached ``GET /jobs/{id}``. Errors
    are still reported: the API's exception handler captures them, the logging integration
    picks up Django's ``django.request`` errors, and ``before_send`` adds the request's method,
    path and route from Conveyor's own context.
    """
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import ignore_logger
    from sentry_sdk.integrations.redis import RedisIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release or f"conveyor@{project_version()}",
        # None, not 0, when no trace is wanted: with 0 the SDK still builds an (unsampled)
        # transaction for every request and task.
        traces_sample_rate=traces_sample_rate or None,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=before_send,
        integrations=[
            CeleryIntegration(monitor_beat_tasks=False),
            *(
                # Spans for every middleware and signal cost each request time even unsampled.
                [
                    DjangoIntegration(
                        middleware_spans=False, signals_spans=False, cache_spans=False
                    ),
                    RedisIntegration(),
                ]
                if instrument_requests
                else []
            ),
        ],
        disabled_integrations=[] if instrument_requests else [DjangoIntegration, RedisIntegration],
    )
    # A request with a bad Host header is logged at ERROR by Django: a scanner, not a bug.
    ignore_logger("django.security.DisallowedHost")
    if not instrument_requests:
        # What the Django integration would do: report an exception that escaped a view once,
        # from Django's signal, not again from Django's "Internal Server Error" log line (which
        # comes after the request's context is gone).
        from django.core.signals import got_request_exception

        ignore_logger("django.request")
        ignore_logger("django.server")
        got_request_exception.connect(_report_request_exception, dispatch_uid="conveyor.sentry")
    # One INFO line per request, never an error: as a breadcrumb it would only cost every
    # request time (the event has the request itself).
    ignore_logger("conveyor.access")


def _report_request_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    import sys

    import sentry_sdk

    sentry_sdk.capture_exception(sys.exc_info())


def is_operational(exc: BaseException | None) -> bool:
    """An error that is the caller's (a 4xx), not a bug."""
    from django.core.exceptions import PermissionDenied, SuspiciousOperation
    from django.http import Http404
    from rest_framework.exceptions import APIException

    from apps.core.errors import ConveyorError

    if isinstance(exc, ConveyorError):
        return exc.status < 500
    if isinstance(exc, APIException):
        return int(exc.status_code) < 500
    return isinstance(exc, Http404 | PermissionDenied | SuspiciousOperation)


def before_send(event: Any, hint: dict[str, Any]) -> Any:
    exc_info = hint.get("exc_info")
    if exc_info and is_operational(exc_info[1]):
        return None
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = dict(tags or {})
    request_id = current_request_id()
    if request_id:
        tags.setdefault("request_id", request_id)
    job = current_job()
    if job is not None:
        tags.setdefault("job_id", str(job.pk))
        tags.setdefault("job_type", job.type)
    request = event.get("request")
    if request is None:
        request = _request_context(tags)
        if request is not None:
            event["request"] = request
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() in _SENSITIVE_HEADERS:
                    headers[name] = FILTERED
    return scrub(event)


def _request_context(tags: dict[str, Any]) -> dict[str, Any] | None:
    """What the event says about the request being served, when the Django integration (which
    fills ``event["request"]``) is left out: method and path, no query string or body."""
    http_request = current_request()
    if http_request is None:
        return None
    match = getattr(http_request, "resolver_match", None)
    if match is not None:
        tags.setdefault("route", match.route)
    headers = {
        name: http_request.headers[name]
        for name in ("Host", "User-Agent", "Content-Type", "Content-Length")
        if name in http_request.headers
    }
    return {"method": http_request.method, "url": http_request.path, "headers": headers}


def scrub(value: Any) -> Any:
    """``value`` (an event, or part of one) with secrets masked in every string."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value
