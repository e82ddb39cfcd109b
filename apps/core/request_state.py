"""What the layers of one HTTP request tell each other: one typed object per request.

The request-id middleware, the API-key authentication and the views all learn something about
the request that a later layer needs (its id, whether the client wrote recently, values the
authentication round trip fetched for the view). They share it through ``request_state``
instead of ad-hoc attributes on the request: one place lists every field, with its meaning
and its default. DRF wraps Django's request in one of its own for each view, so the state
hangs on the Django request, which both share, and lives exactly as long as the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import HttpRequest
from rest_framework.request import Request

_ATTRIBUTE = "conveyor_state"


@dataclass(slots=True)
class RequestState:
    # The request's id (X-Request-ID), set by RequestIdMiddleware; None outside it.
    request_id: str | None = None
    # False only when authentication checked the client's read-your-writes pin and found none:
    # until then the client counts as having written, since the primary is always a correct
    # answer (apps/core/replicas.py).
    recently_wrote: bool = True
    # The values of the authentication class's ``prefetch_keys``, fetched from the cache in
    # the round trip that authenticated the request (None for a key the cache did not hold).
    prefetched: list[bytes | None] = field(default_factory=list)


def request_state(request: HttpRequest | Request) -> RequestState:
    """The state of ``request`` (a Django or a DRF request), attached on first use."""
    if isinstance(request, Request):
        request = request._request
    state: RequestState | None = request.__dict__.get(_ATTRIBUTE)
    if state is None:
        state = RequestState()
        setattr(request, _ATTRIBUTE, state)
    return state
