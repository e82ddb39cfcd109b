"""Process-level endpoints (liveness) and JSON answers for Django's own 404/500 paths."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import errors
from apps.core.renderers import dumps
from apps.core.responses import error_http_response


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. No dependency is checked here; /readyz does that."""
    return HttpResponse(b'{"status":"ok"}', content_type="application/json")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_http_response(errors.NotFound())


def server_error(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_http_response(errors.ConveyorError())


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_http_response(errors.ValidationFailed("Bad request."))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Only non-API pages get here (the admin); API views answer another client's job with 404.
    error = errors.ConveyorError("You may not do this.")
    error.status, error.code = 403, "permission_denied"
    return error_http_response(error)


class BenchConstantView(APIView):
    """The benchmark ceiling: a bare DRF endpoint returning a constant, on the same server and
    settings as the real API (enabled only with BENCHMARK_ENDPOINTS=true)."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of the web processes, plus queue depths and live workers (read now).

    Open to direct requests from METRICS_ALLOWED_NETWORKS (default: loopback and private
    ranges); anyone else needs ``Authorization: Bearer $METRICS_TOKEN``. 404 with metrics off.
    """
    from django.conf import settings

    from apps.core import metrics as prometheus

    if not settings.METRICS_ENABLED:
        return error_http_response(errors.NotFound())
    if not prometheus.access_allowed(
        request.META,
        allowed_networks=settings.METRICS_ALLOWED_NETWORKS,
        token=settings.METRICS_TOKEN,
    ):
        error = errors.Forbidden(
            "Metrics are open to the allowed networks only; elsewhere send "
            "Authorization: Bearer <METRICS_TOKEN>."
        )
        return error_http_response(error)
    return HttpResponse(prometheus.render(deployment=True), content_type=prometheus.CONTENT_TYPE)


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: each backing service answers within a short timeout (apps.core.health)."""
    from apps.core.health import readiness

    ready, checks = readiness()
    body = {"status": "ready" if ready else "degraded", "checks": checks}
    response = HttpResponse(
        dumps(body), status=200 if ready else 503, content_type="application/json"
    )
    if not ready:
        response["Retry-After"] = "5"
    return response
