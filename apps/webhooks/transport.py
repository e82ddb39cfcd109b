"""Sending one webhook request: pinned to a vetted address, bounded in time and size.

The URL's host is resolved and every address checked against the SSRF guard (apps/core/urlguard)
right before sending, then the connection goes to the vetted address itself (with the original
Host header, and the original name for TLS SNI and certificate checks), so a DNS answer that
changes between the check and the connect cannot redirect the request to a private address.
Redirects are not followed; at most ``WEBHOOK_RESPONSE_EXCERPT_BYTES`` of the answer are read.

An attempt has one wall-clock deadline, ``WEBHOOK_TIMEOUT_SECONDS`` from its start, for
everything: the DNS lookup, connect, TLS, sending, the status line and headers, the body.
httpx's timeouts are per operation (a receiver sending a byte a second never trips its read
timeout), so the connection's network backend (``_DeadlineBackend``) gives each socket operation
only the time left before the attempt's deadline, and fails it at once when none is left.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
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


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the current attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # The handshake is one operation under one socket timeout (CPython bounds its total).
        tls = self._stream.start_tls(
            ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - webhooks go over TCP
        raise httpcore.ConnectError("unix sockets are not webhook receivers")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bounded(timeout: float | None, error: type[Exception]) -> float:
    """``timeout`` cut to the time left before this thread's attempt deadline."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout if timeout is not None else settings.WEBHOOK_TIMEOUT_SECONDS
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the attempt's deadline has passed")
    return left if timeout is None else min(timeout, left)


def _client() -> httpx.Client:
    client = getattr(_local, "client", None)
    if client is None:
        transport = httpx.HTTPTransport(
            limits=httpx.Limits(max_keepalive_connections=20, keepalive_expiry=30)
        )
        # httpx takes no network backend; its connection pool does (httpcore's public API).
        transport._pool._network_backend = _DeadlineBackend()
        client = httpx.Client(
            follow_redirects=False,
            headers={"User-Agent": "Conveyor-Webhooks/1.0"},
            transport=transport,
        )
        _local.client = client
    return client


def _target(url: str, deadline: float) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(URL to connect to, extra headers, httpx extensions); raises ValueError when unsafe,
    TimeoutError when the host is not resolved before ``deadline``."""
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return url, {}, {}
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port, timeout=max(0.0, deadline - time.monotonic()))
    if addresses is None:
        raise TimeoutError("the host was not resolved in time")
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
    """Send one attempt; it ends by ``WEBHOOK_TIMEOUT_SECONDS`` after it began, whatever the
    receiver does (error ``timeout``)."""
    started = time.perf_counter()
    deadline = time.monotonic() + settings.WEBHOOK_TIMEOUT_SECONDS

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 2)

    try:
        target, extra_headers, extensions = _target(url, deadline)
    except TimeoutError:
        return Answer(None, elapsed(), error="timeout")
    except ValueError as exc:
        return Answer(None, elapsed(), error=f"refused: {exc}")
    _local.deadline = deadline
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
            try:
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= limit or time.monotonic() > deadline:
                        break
            except httpx.TimeoutException:
                pass  # the status came in time; the excerpt is what came before the deadline
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
    finally:
        _local.deadline = None
