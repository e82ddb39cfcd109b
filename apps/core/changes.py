"""Wake-ups for long-polls: one subscription per process to the cache's change channel.

A request that waits for a cache key to change registers a ``Waiter`` here, then marks the key
as watched in Redis (``FastCache.watch``); the next ``set_if_newer`` of that key publishes its new
value on the change channel (apps/core/fastcache.py). Each process has one listener thread on
one Redis connection, subscribed to that channel, which hands each message to the waiters of its
key (``loop.call_soon_threadsafe`` for a waiter in an event loop): a waiting request costs a
``Waiter`` and its coroutine, never a thread, a worker or a connection of its own.

Only watched keys are published, so a process receives messages for keys somebody waits on,
not for every change of every job.

A message can be missed: while the listener reconnects (a Redis restart), or when a write-through
failed (its warning is logged). So the listener wakes every waiter with "re-check" after each
(re)subscription, and waiters re-read on their own every ``WAIT_RECHECK_SECONDS``: a lost wake-up
costs at most that much latency, and a wait never outlives its deadline. Without Redis (the
embedded development defaults) there is no channel: waiters re-read every
``WAIT_FALLBACK_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from functools import cache

from django.conf import settings

from apps.core.errors import ServiceUnavailable
from apps.core.fastcache import changes_channel

logger = logging.getLogger(__name__)


class Waiter:
    """One waiting request: woken from the listener thread, awaited in an event loop. It may be
    woken before it is awaited (between registration and the wait), so a wake-up is a flag."""

    def __init__(self, key: str, deadline: float) -> None:
        self.key = key
        self.deadline = deadline  # time.time()
        self.id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._woken = False
        self._value: bytes | None = None

    def wake(self, value: bytes | None) -> None:
        """From any thread: the key now holds ``value`` (None: unknown, re-read it)."""
        with self._lock:
            self._woken = True
            if value is not None:
                self._value = value  # messages of one channel arrive in order: the latest wins
            loop, event = self._loop, self._event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the request is gone
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> tuple[bool, bytes | None]:
        """Wait up to ``timeout`` s for a wake-up: (woken, the value it brought, if any)."""
        with self._lock:
            if self._event is None:
                self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
            event = self._event
            pending = self._woken
        if not pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.0, timeout))
        with self._lock:
            woken, value = self._woken, self._value
            self._woken, self._value = False, None
            event.clear()
        return woken, value


class ChangeFeed:
    """The process's subscription and its waiters (see the module's docstring)."""

    def __init__(self, url: str | None, max_waiters: int) -> None:
        self.url = url
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._count = 0
        self._pid = 0
        self._stopping = False

    @property
    def live(self) -> bool:
        """Whether changes arrive as messages (else waiters re-read at the fallback interval)."""
        return self.url is not None

    def add(self, waiter: Waiter) -> None:
        """Register ``waiter``; ServiceUnavailable (503) when the process holds its maximum."""
        with self._lock:
            if self._stopping or self._count >= self.max_waiters:
                raise ServiceUnavailable(
                    "This server holds as many waiting requests as it may; retry shortly.",
                    details={"max_waiters_per_process": self.max_waiters},
                    retry_after=1,
                )
            self._waiters.setdefault(waiter.key, set()).add(waiter)
            self._count += 1
            if self._pid != os.getpid() and self.live:
                self._pid = os.getpid()  # a forked child starts its own listener
                threading.Thread(target=self._listen, name="change-feed", daemon=True).start()

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.key)
            if waiters is not None and waiter in waiters:
                waiters.discard(waiter)
                self._count -= 1
                if not waiters:
                    del self._waiters[waiter.key]

    @property
    def waiting(self) -> int:
        return self._count

    @property
    def stopping(self) -> bool:
        return self._stopping

    def release_all(self) -> None:
        """Shutting down: wake every waiter (each answers with what it has) and take no more."""
        with self._lock:
            self._stopping = True
        self._wake_all()

    def _wake_all(self) -> None:
        with self._lock:
            everyone = [w for waiters in self._waiters.values() for w in waiters]
        for waiter in everyone:
            waiter.wake(None)

    def _deliver(self, message: bytes) -> None:
        k, _, value = message.partition(b" ")
        with self._lock:
            waiters = list(self._waiters.get(k.decode(), ()))
        for waiter in waiters:
            waiter.wake(value)

    def _listen(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside redis-py: a reconnection must be seen here, to wake every waiter
        # (messages published while it was away are lost).
        client = redis.Redis.from_url(
            self.url or "",
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            health_check_interval=15,
        )
        channel = changes_channel()
        failures = 0
        pubsub = None
        while True:
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                pubsub.get_message(timeout=1)  # the subscription's confirmation
                if failures:
                    logger.warning("change feed reconnected after %d failed attempts", failures)
                failures = 0
                self._wake_all()  # anything published before now may have been missed
                while True:
                    message = pubsub.get_message(timeout=5)
                    if message is not None and message["type"] == "message":
                        self._deliver(message["data"])
            except Exception:
                failures += 1
                if failures == 1:
                    logger.warning("change feed lost its Redis connection", exc_info=True)
                time.sleep(min(2.0, 0.1 * failures))
                try:
                    if pubsub is not None:
                        pubsub.close()
                except Exception:  # noqa: S110 - it is being replaced anyway
                    pass


@cache
def change_feed() -> ChangeFeed:
    return ChangeFeed(settings.REDIS_CACHE_URL or None, settings.WAIT_MAX_PER_PROCESS)
