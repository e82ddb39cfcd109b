"""Sending one webhook request: pinned to a vetted address, bounded in time and size.

The URL's host is resolved and every address checked against the SSRF guard (apps/core/urlguard)
right before sending, then the connection goes to the vetted address itself (with the original
Host header, and the original name for TLS SNI and certificate checks), so a DNS answer that
changes between the check and the connect cannot redirect the request to a private address.
Redirects are not followed; at most ``WEBHOOK_RESPONSE_EXCERPT_BYTES`` of the answer are read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from apps.core.urlguard import is_public_address, resolve

_local = threading.local()


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    latency_ms: float
    excerpt: str = ""
    error: str = ""
    retry_after: float | None = None


def _client() -> httpx.Client:
    client = getattr(_local, "client", None)
    if client is None:
        client = httpx.Client(
            follow_redirects=False,
            headers={"User-Agent": "Conveyor-Webhooks/1.0"},
            limits=httpx.Limits(max_keepalive_connections=20, keepalive_expiry=30),
        )
        _local.client = client
    return client


def _target(url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(URL to connect to, extra headers, httpx extensions); raises ValueError when unsafe."""
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return url, {}, {}
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise ValueError("the host does not resolve")
    if not all(is_public_address(address) for address in addresses):
        raise ValueError("the host resolves to a private, loopback or link-local address")
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, {"Host": parts.netloc.rsplit("@", 1)[-1]}, extensions


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    started = time.perf_counter()
    deadline = time.monotonic() + settings.WEBHOOK_TIMEOUT_SECONDS

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 2)

    try:
        target, extra_headers, extensions = _target(url)
    except ValueError as exc:
        return Answer(None, elapsed(), error=f"refused: {exc}")
    try:
        with _client().stream(
            "POST",
            target,
            content=body,
            headers={**headers, **extra_headers},
            extensions=extensions,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        ) as response:
            excerpt = bytearray()
            limit = settings.WEBHOOK_RESPONSE_EXCERPT_BYTES
            for chunk in response.iter_bytes():
                excerpt += chunk
                if len(excerpt) >= limit or time.monotonic() > deadline:
                    break
            return Answer(
                response.status_code,
                elapsed(),
                excerpt=bytes(excerpt[:limit]).decode("utf-8", "replace"),
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
    except httpx.TimeoutException:
        return Answer(None, elapsed(), error="timeout")
    except httpx.HTTPError as exc:
        return Answer(None, elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
