"""The hot-path cache: raw bytes in Redis, several keys per round trip, version-guarded writes.

The read path (authentication, ``GET /jobs/{id}``) runs on every poll, so it talks to Redis
directly instead of through Django's cache framework: values are stored as bytes in the format
the caller wants to answer with, related keys are fetched with one MGET, and writes that must
never go backwards in time use a compare-and-set script. Without Redis (the embedded defaults)
the same interface sits on Django's configured cache.

Values written by ``set_if_newer`` while someone waits for them (``watch``) are also published
on one channel, which each web process subscribes to once (apps/core/changes.py): the long-polls
of the API are woken by the write itself, not by polling.

Keys are ``<CACHE_KEY_PREFIX>:<name>``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

# Sets KEYS[1] to ARGV[2] (whose first word is its version) unless the stored value's version
# is at least ARGV[1]: two writers racing with versions 2 and 3 always leave 3 behind. When
# someone waits for the key (its watch marker KEYS[2] exists, see watch()), the new value is
# published on the change channel ARGV[4] as "<key> <value>", in the same atomic step: a waiter
# that set the marker and then read the key either read the new value or gets the message.
_SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+) '))
  if stored and stored >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[4], KEYS[1] .. ' ' .. ARGV[2])
end
return 1
"""

# Begins a wait on KEYS[1] (see watch()): drops the waiter set's (KEYS[3]) entries whose
# deadline (score) is before ARGV[1]; refuses when ARGV[4] (> 0) are left; else adds member
# ARGV[3] with deadline ARGV[2], keeps the watch marker KEYS[2] and the set for at least ARGV[5]
# seconds, and returns {1, the key's value}.
_WATCH = """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local limit, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if limit > 0 and redis.call('ZCARD', KEYS[3]) >= limit then return {0} end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
if redis.call('TTL', KEYS[3]) < ttl then redis.call('EXPIRE', KEYS[3], ttl) end
if redis.call('TTL', KEYS[2]) < ttl then redis.call('SET', KEYS[2], '1', 'EX', ttl) end
return {1, redis.call('GET', KEYS[1])}
"""


# One round trip for a request's cache work (see Batch): MGET the first ARGV[1] keys; if ARGV[2]
# is not 0, INCR the next key and give it that TTL when the INCR created it; then SET each of
# the remaining keys to its value with its TTL (ARGV pairs from ARGV[3]).
_BATCH = """
local n_get, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local values = {}
if n_get > 0 then values = redis.call('MGET', unpack(KEYS, 1, n_get)) end
local k = n_get
local count = false
if ttl > 0 then
  k = k + 1
  count = redis.call('INCR', KEYS[k])
  if count == 1 then redis.call('EXPIRE', KEYS[k], ttl) end
end
for i = k + 1, #KEYS do
  local a = 3 + 2 * (i - k - 1)
  redis.call('SET', KEYS[i], ARGV[a], 'EX', ARGV[a + 1])
end
return {count, values}
"""


@dataclass
class Batch:
    """Cache work for one round trip: read keys, bump at most one counter (a fixed-window rate
    counter: created with its TTL, so it can never outlive its window), set keys."""

    get: list[str] = field(default_factory=list)
    counter: tuple[str, int] | None = None
    sets: list[tuple[str, bytes, int]] = field(default_factory=list)


@dataclass
class BatchResult:
    values: list[bytes | None]
    count: int | None = None
    # False when the cache could not be reached: the values are unknown, not absent.
    ok: bool = True

    @classmethod
    def failed(cls, batch: Batch) -> BatchResult:
        return cls([None] * len(batch.get), None, ok=False)


class FastCache(Protocol):
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set(self, key: str, value: bytes, ttl: int) -> None: ...

    def add(self, key: str, value: bytes, ttl: int) -> bool:
        """Set ``key`` unless it exists; whether it was set."""
        ...

    def set_many(self, keys: Sequence[str], value: bytes, ttl: int) -> None:
        """Set every key to ``value``, in one round trip."""
        ...

    def set_if_newer(self, items: Sequence[tuple[str, int, bytes]], ttl: int) -> None:
        """Write each (key, version, value) unless a newer version is stored; ``value`` must
        start with ``b"<version> "``."""
        ...

    def delete_many(self, keys: Sequence[str]) -> None: ...

    def run(self, batch: Batch) -> BatchResult:
        """Do ``batch`` in one round trip."""
        ...

    def watch(self, k: str, waiters: str, member: str, deadline: float, limit: int) -> Watch:
        """Begin waiting for ``k`` to change (its next set_if_newer publishes it on
        changes_channel()): add ``member`` to the set ``waiters`` until ``deadline`` (a Unix
        time) unless ``limit`` (> 0) members are already there, and read ``k``. One round trip."""
        ...

    def unwatch(self, waiters: str, member: str) -> None: ...


@dataclass
class Watch:
    admitted: bool
    value: bytes | None = None


def watch_key(k: str) -> str:
    """The marker saying that someone waits for ``k``: only watched keys are published."""
    return f"{k}:watched"


def changes_channel() -> str:
    return key("changes")


def key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:{name}"


class RedisFastCache:
    """redis-py for the occasional write; the per-request reads (``get_many`` and ``run``) send
    their one command on a connection of the calling thread's own, without the client's
    command machinery (retry wrapper, pool bookkeeping, observability hooks), which costs more
    CPU than the round trip itself on a cached ``GET /jobs/{id}``. A connection error is
    retried once on a fresh connection, as redis-py would."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=1, socket_connect_timeout=1, health_check_interval=30
        )
        self._set_if_newer = self.client.register_script(_SET_IF_NEWER)
        self._batch = self.client.register_script(_BATCH)
        self._watch = self.client.register_script(_WATCH)
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # a forked child opens its own
            kwargs = self.client.connection_pool.connection_kwargs
            conn = local.conn = self.client.connection_pool.connection_class(**kwargs)
            local.pid = os.getpid()
        return conn

    def _command(self, *args: Any) -> Any:
        from redis.exceptions import ConnectionError, TimeoutError

        conn = self._connection()
        try:
            conn.send_command(*args)
            return conn.read_response()
        except (ConnectionError, TimeoutError):
            conn.disconnect()
            conn.send_command(*args)
            return conn.read_response()
        except BaseException:
            conn.disconnect()  # never leave a half-read reply on the connection
            raise

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._command("MGET", *keys)

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self.client.set(key, value, ex=ttl)

    def add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self.client.set(key, value, ex=ttl, nx=True))

    def set_many(self, keys: Sequence[str], value: bytes, ttl: int) -> None:
        if not keys:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.set(k, value, ex=ttl)
            pipe.execute()

    def set_if_newer(self, items: Sequence[tuple[str, int, bytes]], ttl: int) -> None:
        channel = changes_channel()
        if len(items) == 1:
            k, version, value = items[0]
            self._set_if_newer(keys=[k, watch_key(k)], args=[version, value, ttl, channel])
            return
        with self.client.pipeline(transaction=False) as pipe:
            for k, version, value in items:
                self._set_if_newer(
                    keys=[k, watch_key(k)], args=[version, value, ttl, channel], client=pipe
                )
            pipe.execute()

    def watch(self, k: str, waiters: str, member: str, deadline: float, limit: int) -> Watch:
        ttl = max(1, int(deadline - time.time()) + 2)
        reply = self._watch(
            keys=[k, watch_key(k), waiters], args=[time.time(), deadline, member, limit, ttl]
        )
        return Watch(bool(reply[0]), reply[1] if len(reply) > 1 else None)

    def unwatch(self, waiters: str, member: str) -> None:
        self._command("ZREM", waiters, member)

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self.client.delete(*keys)

    def run(self, batch: Batch) -> BatchResult:
        if batch.counter is None and not batch.sets:
            # The common read: a plain MGET, the cheapest command there is for it.
            return BatchResult(self.get_many(batch.get) if batch.get else [])
        keys = [*batch.get]
        args: list[int | bytes] = [len(batch.get), 0]
        if batch.counter is not None:
            keys.append(batch.counter[0])
            args[1] = max(1, batch.counter[1])
        for k, value, ttl in batch.sets:
            keys.append(k)
            args += [value, max(1, ttl)]
        from redis.exceptions import NoScriptError

        try:
            count, values = self._command("EVALSHA", self._batch.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted Redis: load it, through redis-py, once
            count, values = self._batch(keys=keys, args=args)
        return BatchResult(values, count)


class DjangoFastCache:
    """The same interface on Django's cache (file cache in development): not atomic, which
    only matters under concurrency that the embedded setup does not have."""

    def __init__(self) -> None:
        from django.core.cache import cache as django_cache

        self.cache = django_cache

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = self.cache.get_many(keys)
        return [found.get(k) for k in keys]

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self.cache.set(key, value, ttl)

    def add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self.cache.add(key, value, ttl))

    def set_many(self, keys: Sequence[str], value: bytes, ttl: int) -> None:
        self.cache.set_many(dict.fromkeys(keys, value), ttl)

    def set_if_newer(self, items: Sequence[tuple[str, int, bytes]], ttl: int) -> None:
        for k, version, value in items:
            current = self.cache.get(k)
            if current is not None and int(current.split(b" ", 1)[0]) >= version:
                continue
            self.cache.set(k, value, ttl)

    def delete_many(self, keys: Sequence[str]) -> None:
        self.cache.delete_many(keys)

    def watch(self, k: str, waiters: str, member: str, deadline: float, limit: int) -> Watch:
        now = time.time()
        members = {m: d for m, d in (self.cache.get(waiters) or {}).items() if d >= now}
        if limit > 0 and len(members) >= limit:
            return Watch(False)
        members[member] = deadline
        self.cache.set(waiters, members, max(1, int(max(members.values()) - now) + 2))
        return Watch(True, self.cache.get(k))

    def unwatch(self, waiters: str, member: str) -> None:
        members = self.cache.get(waiters) or {}
        if members.pop(member, None) is not None:
            self.cache.set(waiters, members, 62)

    def run(self, batch: Batch) -> BatchResult:
        values = self.get_many(batch.get) if batch.get else []
        count = None
        if batch.counter is not None:
            counter, ttl = batch.counter
            count = 1 if self.cache.add(counter, 1, ttl) else self.cache.incr(counter)
        for k, value, ttl in batch.sets:
            self.cache.set(k, value, ttl)
        return BatchResult(values, count)


@cache
def fast_cache() -> FastCache:
    if settings.REDIS_CACHE_URL:
        return RedisFastCache(settings.REDIS_CACHE_URL)
    return DjangoFastCache()
