"""DRF authentication: ``Authorization: Bearer <api key>``, with the request's rate limit and its
read-your-writes pin done in the same cache round trip.

Order matters for floods: a request without a usable key, or with a key this process does not
know, is counted against its IP before the database is ever asked about the key
(apps/clients/limits.py); a known client's request is counted against the client and its
endpoint group, after which the view runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS

from apps.clients import limits
from apps.clients.models import ApiClient
from apps.clients.selectors import authenticate_key
from apps.core.fastcache import Batch
from apps.core.replicas import pin_key, pin_ttl, replicas_configured
from apps.core.request_state import request_state


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request: Any) -> tuple[ApiClient, int] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            limits.check_anonymous(request)
            return None
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != self.keyword or not key:
            limits.check_anonymous(request)
            raise AuthenticationFailed("Malformed Authorization header; use 'Bearer <api key>'.")
        view = (request.parser_context or {}).get("view")
        group = rate_limit_group(view, request.method) if limits.enabled() else None
        safe = request.method in SAFE_METHODS
        replicas = replicas_configured()
        # Only a view that may read a replica needs to know whether the client wrote recently;
        # every write (re)starts the client's pin, before the write, so that the response can
        # never reach the client ahead of it.
        check_pin = replicas and safe and bool(getattr(view, "replica_reads", False))
        set_pin = replicas and not safe
        prefetch: Callable[[int], Sequence[str]] | None = self.prefetch_keys(request)
        prefetched = 0

        def also(client_id: int, known: ApiClient | None) -> Batch:
            nonlocal prefetched
            batch = Batch(get=list(prefetch(client_id)) if prefetch is not None else [])
            prefetched = len(batch.get)
            principal = f"client:{client_id}"
            if check_pin:
                batch.get.append(pin_key(principal))
            if set_pin:
                batch.sets.append((pin_key(principal), b"1", pin_ttl()))
            if group is not None and not (known is not None and known.unlimited):
                batch.counter = limits.client_counter(group, client_id)
            return batch

        client, result = authenticate_key(
            key, also=also, unverified=lambda: limits.anonymous_guard(request)
        )
        if client is None:
            raise AuthenticationFailed("Unknown or revoked API key.")
        if group is not None:
            limits.enforce_client(group, client, result.count)
        values = result.values
        state = request_state(request)
        if check_pin:
            # Unknown (cache down) counts as pinned: the primary is always a correct answer.
            pinned = not result.ok or len(values) <= prefetched or values[prefetched] is not None
            state.recently_wrote = pinned
        state.prefetched = values[:prefetched]
        return client, client.api_key_id  # type: ignore[attr-defined]

    def prefetch_keys(self, request: Any) -> Any:
        """Cache keys (given the client id) to fetch in the authentication round trip; their
        values reach the view as ``request_state(request).prefetched``."""
        return None

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="conveyor"'


def rate_limit_group(view: Any, method: str) -> str | None:
    """The endpoint group a request counts in (the view's ``rate_limit_groups``; HEAD as GET)."""
    groups: dict[str, str] = getattr(view, "rate_limit_groups", {})
    return groups.get(method) or (groups.get("GET") if method == "HEAD" else None)
