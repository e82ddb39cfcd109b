"""Outbound URL safety (SSRF guard) for webhook URLs.

Checked at submission and again before every delivery, because DNS answers can change between
the two. Private, loopback, link-local, multicast, reserved and unspecified addresses are refused
unless ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is on (development and tests).

Resolution is bounded, because it runs inside web requests: ``getaddrinfo`` has no timeout of
its own, so lookups run on daemon threads that the caller waits for at most
``WEBHOOK_RESOLVE_TIMEOUT_SECONDS`` (a lookup still running then is abandoned, and ends on its
own). A batch resolves its distinct hosts once, side by side, within
``WEBHOOK_RESOLVE_BUDGET_SECONDS`` for all of them (``webhook_hosts_resolved``). A host not
resolved in time is refused like one that does not resolve, with its own message. Each process
remembers answers for a short while (``_CACHE_SECONDS``), never a timeout.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 2048


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _getaddrinfo(host: str) -> list[str]:
    """The host's addresses ([] when it does not resolve); may block for long."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


_LOOKUP_THREADS = 16  # most lookups of one batch running at once
# Most lookup threads of a process alive at once: lookups that hang (they end by the system
# resolver's own timeout) cannot pile up threads; past it, lookups are "not resolved in time".
_lookup_slots = threading.BoundedSemaphore(64)
_CACHE_SECONDS = 30.0  # how long a process reuses an answer (addresses or "does not resolve")
_CACHE_MAX = 4096
_cache: dict[str, tuple[float, list[str]]] = {}
_cache_lock = threading.Lock()


def _cached(host: str) -> list[str] | None:
    entry = _cache.get(host)
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


def _remember(host: str, addresses: list[str]) -> None:
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[host] = (time.monotonic() + _CACHE_SECONDS, addresses)


def forget_resolutions() -> None:
    with _cache_lock:
        _cache.clear()


def _resolve_all(hosts: Iterable[str], deadline: float) -> dict[str, list[str] | None]:
    """Each host's addresses, [] when it does not resolve, None when not resolved by
    ``deadline`` (monotonic). Up to ``_LOOKUP_THREADS`` daemon threads take hosts in turn; the
    caller returns at the deadline whatever they are doing."""
    pending = list(dict.fromkeys(hosts))
    results: dict[str, list[str] | None] = dict.fromkeys(pending)
    if not pending:
        return results
    lock = threading.Lock()
    done = threading.Condition(lock)
    queue = list(reversed(pending))
    remaining = [len(pending)]

    def work() -> None:
        try:
            while True:
                with lock:
                    if not queue or time.monotonic() >= deadline:
                        return
                    host = queue.pop()
                addresses = _getaddrinfo(host)
                _remember(host, addresses)
                with done:
                    results[host] = addresses
                    remaining[0] -= 1
                    done.notify_all()
        finally:
            _lookup_slots.release()

    for _ in range(min(_LOOKUP_THREADS, len(pending))):
        if not _lookup_slots.acquire(blocking=False):
            break
        threading.Thread(target=work, name="conveyor-resolve", daemon=True).start()
    with done:
        done.wait_for(lambda: remaining[0] == 0, timeout=max(0.0, deadline - time.monotonic()))
        return dict(results)


def resolve(host: str, port: int, *, timeout: float | None = None) -> list[str] | None:
    """The host's addresses now (no cache: the transport connects to what it vetted), [] when
    it does not resolve, None when not resolved within ``timeout`` seconds (by default
    ``WEBHOOK_RESOLVE_TIMEOUT_SECONDS``). ``port`` does not change the answer."""
    if timeout is None:
        timeout = settings.WEBHOOK_RESOLVE_TIMEOUT_SECONDS
    if timeout <= 0:
        return None
    return _resolve_all([host], time.monotonic() + timeout)[host]


# Answers gathered by webhook_hosts_resolved for the submission being validated, and the
# deadline of its budget.
_gathered: ContextVar[tuple[dict[str, list[str] | None], float] | None] = ContextVar(
    "webhook_hosts", default=None
)


def _host_of(url: object) -> str | None:
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        return None
    try:
        return urlsplit(url).hostname or None
    except ValueError:
        return None


@contextmanager
def webhook_hosts_resolved(urls: Iterable[object]) -> Iterator[None]:
    """Within the block, ``webhook_url_problem`` answers from one concurrent resolution of the
    distinct hosts of ``urls`` bounded by ``WEBHOOK_RESOLVE_BUDGET_SECONDS`` in all (a batch of
    1 000 URLs costs at most that), instead of resolving URL after URL."""
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        yield
        return
    deadline = time.monotonic() + settings.WEBHOOK_RESOLVE_BUDGET_SECONDS
    hosts = {host for host in map(_host_of, urls) if host is not None}
    answers: dict[str, list[str] | None] = {}
    for host in hosts:
        if _is_literal(host):
            continue
        cached = _cached(host)
        if cached is not None:
            answers[host] = cached
    unknown = [h for h in hosts if h not in answers and not _is_literal(h)]
    answers.update(_resolve_all(unknown, deadline))
    token = _gathered.set((answers, deadline))
    try:
        yield
    finally:
        _gathered.reset(token)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _addresses_for(host: str, port: int) -> list[str] | None:
    """Submission's view of ``host``: from the block's gathered answers, the cache, or one
    lookup bounded by the per-lookup timeout (and what is left of the block's budget)."""
    if _is_literal(host):
        return [host.split("%", 1)[0]]
    gathered = _gathered.get()
    if gathered is not None and host in gathered[0]:
        return gathered[0][host]
    cached = _cached(host)
    if cached is not None:
        return cached
    timeout = settings.WEBHOOK_RESOLVE_TIMEOUT_SECONDS
    if gathered is not None:
        timeout = min(timeout, gathered[1] - time.monotonic())
    return resolve(host, port, timeout=timeout)


def webhook_url_problem(url: object) -> str | None:
    """Why ``url`` may not receive webhooks, or None when it may."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return f"Must be a URL of at most {MAX_URL_LENGTH} characters."
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "Must be a valid URL."
    if parts.scheme not in {"http", "https"}:
        return "Must be an http or https URL."
    if getattr(settings, "WEBHOOK_REQUIRE_HTTPS", False) and parts.scheme != "https":
        return "Must be an https URL."
    if not parts.hostname:
        return "Must include a host."
    if parts.username or parts.password:
        return "Must not include credentials."
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return None
    addresses = _addresses_for(parts.hostname, port)
    if addresses is None:
        return "The host could not be resolved in time; try again later."
    if not addresses:
        return "The host does not resolve."
    if not all(is_public_address(a) for a in addresses):
        return "Resolves to a private, loopback, link-local or multicast address."
    return None
