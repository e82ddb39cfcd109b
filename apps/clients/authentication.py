"""DRF authentication: ``Authorization: Bearer <api key>``."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apps.clients.models import ApiClient
from apps.clients.selectors import authenticate_key


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request: Any) -> tuple[ApiClient, int] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != self.keyword or not key:
            raise AuthenticationFailed("Malformed Authorization header; use 'Bearer <api key>'.")
        client, extra = authenticate_key(key, also=self.prefetch_keys(request))
        if client is None:
            raise AuthenticationFailed("Unknown or revoked API key.")
        self.prefetched(request, extra)
        return client, client.api_key_id  # type: ignore[attr-defined]

    def prefetch_keys(self, request: Any) -> Any:
        """Cache keys (given the client id) to fetch in the authentication round trip."""
        return None

    def prefetched(self, request: Any, values: list[bytes | None]) -> None:
        """Receives the values of ``prefetch_keys``."""

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="conveyor"'
