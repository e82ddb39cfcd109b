"""The base of every API view (jobs, webhooks, …): JSON bodies only, rate-limit groups, and
the switch that lets a GET read a replica."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.views import APIView

from apps.core.errors import UnsupportedMediaType
from apps.core.replicas import allow_replica_reads
from apps.core.request_state import request_state


class ConveyorAPIView(APIView):
    """Base for every API view: a request body, wherever it is sent, must be JSON.

    ``rate_limit_groups`` names each method's rate-limit group (apps/clients/limits.py), counted
    while authenticating. ``replica_reads`` lets the view's GET read a replica once
    authentication found that the client has not written recently (apps/core/replicas.py).
    """

    rate_limit_groups: dict[str, str] = {}
    replica_reads = False

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if _has_body(request) and not _is_json(request.content_type):
            raise UnsupportedMediaType()
        if self.replica_reads and not request_state(request).recently_wrote:
            allow_replica_reads()


def _has_body(request: Request) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return True


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
