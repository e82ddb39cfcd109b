"""Readiness checks: is each backing service reachable right now?

Each check runs with a short timeout, in parallel, and reports ``{"ok": bool, "ms": float}``
(plus ``error`` when it failed). The database and the broker are required; replicas are
reported but only degrade reads (the router sends reads to the primary when a replica is down
or lags), and the cache is reported but Conveyor falls back to the database without it. A
replica's check also says whether it is in rotation, its state (``in_rotation``, ``lagging``,
``down``, ``not_a_standby``) and its lag in seconds. /readyz answers 503 only when a required
check fails.

/readyz needs no key, so anyone can call it as often as they like; what it costs is bounded per
web process whatever the callers do. A result is reused for ``READYZ_CACHE_SECONDS`` (1 s), and
concurrent requests wait for the one check in progress instead of starting their own, so a
process runs at most one round of checks per second. The checks run on a few long-lived
threads, and a check that overran its timeout (a service that hangs instead of refusing) is not
started again until it has ended: each process has at most one check per service in flight, so
at most one connection per service beyond its own. Every connection a check opens is closed
when the check ends; the cache check uses the process's own Redis client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.conf import settings
from django.db import connections

CHECK_TIMEOUT = 2.0


def _database(alias: str) -> Callable[[], None]:
    def check() -> None:
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connection.close()

    return check


def _replica(alias: str) -> Callable[[], dict[str, Any]]:
    def check() -> dict[str, Any]:
        from apps.core.replicas import check as check_replica

        try:
            # The same check the router uses; its verdict also updates this process's rotation.
            state = check_replica(alias)
        finally:
            connections[alias].close()
        return {"ok": state.in_rotation, **state.as_dict()}

    return check


def _cache() -> None:
    from apps.core.fastcache import fast_cache, key

    fast_cache().get_many([key("readyz")])


def _broker() -> None:
    from kombu import Connection

    with Connection(
        settings.CELERY_BROKER_URL,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        connect_timeout=CHECK_TIMEOUT,
    ) as connection:
        # One retry, at once: kombu's default pause before a retry (2 s) would turn a refused
        # connection into a timeout, and leave the check running into the next round.
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=int(CHECK_TIMEOUT)
        )
        connection.default_channel  # noqa: B018 - opening a channel is the check


Check = Callable[[], dict[str, Any] | None]


def checks() -> dict[str, tuple[Check, bool]]:
    """name → (check, required). A check raises when it fails, or returns details (``ok`` among
    them when it can answer and still be unhealthy, like a lagging replica)."""
    found: dict[str, tuple[Check, bool]] = {"database": (_database("default"), True)}
    for alias in settings.DATABASES:
        if alias != "default":
            found[f"database:{alias}"] = (_replica(alias), False)
    found["cache"] = (_cache, False)
    found["broker"] = (_broker, True)
    return found


def _timed(check: Check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        details = check()
    except Exception as exc:
        return {"ok": False, "ms": _ms(started), "error": type(exc).__name__}
    return {"ok": True, "ms": _ms(started), **(details or {})}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


_lock = threading.Lock()
_result: tuple[float, tuple[bool, dict[str, dict[str, Any]]]] | None = None
_running: dict[str, Future[dict[str, Any]]] = {}
_pool: ThreadPoolExecutor | None = None


def readiness() -> tuple[bool, dict[str, dict[str, Any]]]:
    """(ready, checks), fresh or at most ``READYZ_CACHE_SECONDS`` old."""
    global _result
    with _lock:
        if _result is not None and time.monotonic() - _result[0] < settings.READYZ_CACHE_SECONDS:
            return _result[1]
        result = _check_all()
        _result = (time.monotonic(), result)
        return result


def forget_readiness() -> None:
    """Drop the remembered result (tests, and a process that knows something changed)."""
    global _result
    with _lock:
        _result = None


def _check_all() -> tuple[bool, dict[str, dict[str, Any]]]:
    global _pool
    registered = checks()
    if _pool is None:
        # Threads start as needed, at most one per check (a check still running is never
        # started again); the maximum leaves room for replicas added later.
        _pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="readyz")
    futures: dict[str, Future[dict[str, Any]] | None] = {}
    for name, (check, _) in registered.items():
        previous = _running.get(name)
        if previous is not None and not previous.done():
            futures[name] = None  # the last one hangs still: report it, do not pile up
            continue
        futures[name] = _running[name] = _pool.submit(_timed, check)
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + CHECK_TIMEOUT
    for name, future in futures.items():
        if future is None:
            results[name] = {"ok": False, "ms": CHECK_TIMEOUT * 1000, "error": "timeout"}
        else:
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                results[name] = {"ok": False, "ms": CHECK_TIMEOUT * 1000, "error": "timeout"}
        results[name]["required"] = registered[name][1]
    ready = all(result["ok"] for result in results.values() if result["required"])
    return ready, results
