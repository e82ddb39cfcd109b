"""The hot-path cache: raw bytes in Redis, several keys per round trip, version-guarded writes.

The read path (authentication, ``GET /jobs/{id}``) runs on every poll, so it talks to Redis
directly instead of through Django's cache framework: values are stored as bytes in the format
the caller wants to answer with, related keys are fetched with one MGET, and writes that must
never go backwards in time use a compare-and-set script. Without Redis (the embedded defaults)
the same interface sits on Django's configured cache.

Keys are ``<CACHE_KEY_PREFIX>:<name>``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from typing import Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

# Sets KEYS[1] to ARGV[2] (whose first word is its version) unless the stored value's version
# is at least ARGV[1]: two writers racing with versions 2 and 3 always leave 3 behind.
_SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+) '))
  if stored and stored >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class FastCache(Protocol):
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set(self, key: str, value: bytes, ttl: int) -> None: ...

    def set_if_newer(self, items: Sequence[tuple[str, int, bytes]], ttl: int) -> None:
        """Write each (key, version, value) unless a newer version is stored; ``value`` must
        start with ``b"<version> "``."""
        ...

    def delete_many(self, keys: Sequence[str]) -> None: ...


def key(name: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:{name}"


class RedisFastCache:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=1, socket_connect_timeout=1, health_check_interval=30
        )
        self._set_if_newer = self.client.register_script(_SET_IF_NEWER)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.client.mget(keys)  # type: ignore[return-value]

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self.client.set(key, value, ex=ttl)

    def set_if_newer(self, items: Sequence[tuple[str, int, bytes]], ttl: int) -> None:
        if len(items) == 1:
            k, version, value = items[0]
            self._set_if_newer(keys=[k], args=[version, value, ttl])
            return
        with self.client.pipeline(transaction=False) as pipe:
            for k, version, value in items:
                self._set_if_newer(keys=[k], args=[version, value, ttl], client=pipe)
            pipe.execute()

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self.client.delete(*keys)


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

    def set_if_newer(self, items: Sequence[tuple[str, int, bytes]], ttl: int) -> None:
        for k, version, value in items:
            current = self.cache.get(k)
            if current is not None and int(current.split(b" ", 1)[0]) >= version:
                continue
            self.cache.set(k, value, ttl)

    def delete_many(self, keys: Sequence[str]) -> None:
        self.cache.delete_many(keys)


@cache
def fast_cache() -> FastCache:
    if settings.REDIS_CACHE_URL:
        return RedisFastCache(settings.REDIS_CACHE_URL)
    return DjangoFastCache()
