"""Which workers are alive: each Celery worker records itself in Redis, /metrics counts them.

A worker's main process writes ``<prefix>:workers`` (a sorted set: name → time of its last
heartbeat) and ``<prefix>:worker:<name>`` (its queues and pool size, expiring) every
``WORKER_HEARTBEAT_SECONDS``, and removes both on a warm shutdown. A worker that vanished
(SIGKILL, machine gone) drops out after three missed heartbeats. Reading is three Redis commands
whatever the history: bounded work for a scrape.

Chosen over asking the workers through the broker (``inspect().ping()``): that waits for
replies and is blind to a worker whose broker connection is busy, and over Celery's own worker
events, which Conveyor keeps off (they cost every worker a message per task). Without Redis (the
embedded defaults) there is nothing to count and the metric is absent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from django.conf import settings

from apps.core.fastcache import RedisFastCache, fast_cache, key

logger = logging.getLogger(__name__)

MAX_WORKERS = 10_000


def _redis() -> Any:
    cache = fast_cache()
    return cache.client if isinstance(cache, RedisFastCache) else None


def _ttl() -> float:
    return 3 * settings.WORKER_HEARTBEAT_SECONDS


def worker_heartbeat(*, name: str, queues: list[str], processes: int) -> None:
    """Record (or refresh) a live worker."""
    client = _redis()
    if client is None:
        return
    details = orjson.dumps({"queues": queues, "processes": processes})
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(key("workers"), {name: time.time()})
        pipe.set(key(f"worker:{name}"), details, ex=max(1, round(_ttl())))
        pipe.execute()


def worker_gone(*, name: str) -> None:
    client = _redis()
    if client is None:
        return
    with client.pipeline(transaction=False) as pipe:
        pipe.zrem(key("workers"), name)
        pipe.delete(key(f"worker:{name}"))
        pipe.execute()


def live_workers() -> dict[str, tuple[int, int]] | None:
    """queue → (live worker instances, their pool processes); None without Redis."""
    client = _redis()
    if client is None:
        return None
    with client.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(key("workers"), "-inf", time.time() - _ttl())
        pipe.zrange(key("workers"), 0, MAX_WORKERS - 1)
        _, names = pipe.execute()
    if not names:
        return {}
    per_queue: dict[str, tuple[int, int]] = {}
    for raw in client.mget([key(f"worker:{name.decode()}") for name in names]):
        if raw is None:
            continue
        details = orjson.loads(raw)
        for queue in details.get("queues", []):
            instances, processes = per_queue.get(queue, (0, 0))
            per_queue[queue] = (instances + 1, processes + int(details.get("processes", 0)))
    return per_queue
