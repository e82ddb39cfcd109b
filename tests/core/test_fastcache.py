"""The hot-path cache on a real Redis: the per-thread connection's reads, batches and recovery."""

from __future__ import annotations

import os
import threading

import pytest
import redis

from apps.core.fastcache import Batch, RedisFastCache

URL = os.environ["REDIS_URL"]


@pytest.fixture
def cache() -> RedisFastCache:
    store = RedisFastCache(URL)
    store.client.delete("fc:a", "fc:b", "fc:n", "fc:s")
    return store


def test_reads_and_batches(cache: RedisFastCache) -> None:
    cache.set("fc:a", b"1", 60)
    assert cache.get_many(["fc:a", "fc:b"]) == [b"1", None]
    result = cache.run(Batch(get=["fc:a"], counter=("fc:n", 60), sets=[("fc:s", b"x", 60)]))
    assert (result.values, result.count) == ([b"1"], 1)
    assert cache.run(Batch(counter=("fc:n", 60))).count == 2
    assert cache.client.get("fc:s") == b"x"
    assert 0 < cache.client.ttl("fc:n") <= 60


def test_a_dropped_connection_is_reopened(cache: RedisFastCache) -> None:
    cache.set("fc:a", b"1", 60)
    assert cache.get_many(["fc:a"]) == [b"1"]
    host, port = cache._connection()._sock.getsockname()[:2]
    assert redis.Redis.from_url(URL).client_kill(f"{host}:{port}")  # as a Redis restart would
    assert cache.get_many(["fc:a"]) == [b"1"]  # retried once on a fresh connection


def test_a_flushed_script_is_loaded_again(cache: RedisFastCache) -> None:
    assert cache.run(Batch(counter=("fc:n", 60))).count == 1
    cache.client.script_flush()
    assert cache.run(Batch(counter=("fc:n", 60))).count == 2


def test_each_thread_has_its_own_connection(cache: RedisFastCache) -> None:
    cache.set("fc:a", b"1", 60)
    seen: list[object] = []

    def read() -> None:
        assert cache.get_many(["fc:a"]) == [b"1"]
        seen.append(cache._connection())

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(conn) for conn in seen}) == 3
