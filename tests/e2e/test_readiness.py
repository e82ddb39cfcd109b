"""/readyz tells the truth about Redis: 503 while it is down, 200 once it is back; and a flood
of anonymous /readyz calls opens a bounded number of connections.

The shared Redis of the suite is never touched: the test starts its own redis-server on a free
loopback port and a web process whose cache and broker point at it, kills it, and starts it
again on the same port.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.support.http import call
from tests.support.prerequisites import missing
from tests.support.processes import (
    ManagedProcess,
    database_url,
    free_port,
    start_web,
    wait_for,
)

pytestmark = [pytest.mark.e2e]


class OwnRedis:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(self.tmp_path),
        ]  # fmt: skip
        self.process = ManagedProcess("redis", argv, {}, self.tmp_path / "redis.log")
        self.process.wait_for_output("Ready to accept connections", timeout=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill_group()
            self.process.stop()
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    if not shutil.which("redis-server"):
        missing("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def readyz(base: str) -> tuple[int, dict[str, Any]]:
    status, _, body = call(base, "GET", "/readyz")
    return status, json.loads(body)


def test_readyz_follows_redis_down_and_back(
    tmp_path: Path, transactional_db: None, redis_server: OwnRedis
) -> None:
    web, base = start_web(
        tmp_path,
        REDIS_URL=redis_server.url,
        CELERY_BROKER_URL=redis_server.url,
        CACHE_KEY_PREFIX="conveyor-readyz",
    )
    try:
        status, body = readyz(base)
        assert status == 200, body
        assert body["checks"]["broker"]["ok"]
        assert body["checks"]["cache"]["ok"]

        redis_server.kill()
        # The last answer may be reused for READYZ_CACHE_SECONDS (1 s).
        status, body = wait_for(
            lambda: (r := readyz(base))[0] == 503 and r, timeout=10, interval=0.2
        )
        assert status == 503
        assert body["status"] == "degraded"
        assert body["checks"]["broker"]["ok"] is False
        assert body["checks"]["cache"]["ok"] is False
        assert body["checks"]["database"]["ok"] is True

        redis_server.start()
        status, body = wait_for(
            lambda: (r := readyz(base))[0] == 200 and r, timeout=15, interval=0.5
        )
        assert body["status"] == "ready"
    finally:
        web.stop()


def test_a_flood_of_readyz_calls_opens_a_bounded_number_of_connections(
    tmp_path: Path, transactional_db: None, redis_server: OwnRedis
) -> None:
    """200 calls, 20 at a time, against two web processes: each process checks at most once
    per READYZ_CACHE_SECONDS (1 s), so the database and Redis see a handful of new connections,
    not one per call, and never more than a few at once."""
    workers = 2
    web, base = start_web(
        tmp_path,
        workers=workers,
        REDIS_URL=redis_server.url,
        CELERY_BROKER_URL=redis_server.url,
        CACHE_KEY_PREFIX="conveyor-readyz",
        RATELIMIT_ENABLE="false",
    )
    own = redis.Redis.from_url(redis_server.url)
    try:
        with psycopg.connect(database_url(), autocommit=True) as pg:

            def sessions() -> int:
                pg.execute("SELECT pg_stat_clear_snapshot()")
                row = pg.execute(
                    "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
                assert row is not None
                return int(row[0])

            def open_now() -> int:
                row = pg.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                assert row is not None
                return int(row[0])

            wait_for(lambda: readyz(base)[0] == 200, timeout=15, interval=0.2)
            time.sleep(1.5)  # PostgreSQL publishes session counts within a second
            pg_before, open_before = sessions(), open_now()
            redis_before = own.info("stats")["total_connections_received"]
            peak = {"pg": open_before, "redis": int(own.info("clients")["connected_clients"])}
            done = threading.Event()

            def sample() -> None:
                with psycopg.connect(database_url(), autocommit=True) as watcher:
                    while not done.is_set():
                        row = watcher.execute(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        ).fetchone()
                        assert row is not None
                        peak["pg"] = max(peak["pg"], int(row[0]) - 1)  # less this process's
                        clients = int(own.info("clients")["connected_clients"])
                        peak["redis"] = max(peak["redis"], clients)
                        time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.monotonic()
            try:
                with ThreadPoolExecutor(max_workers=20) as pool:
                    statuses = list(pool.map(lambda _: readyz(base)[0], range(200)))
            finally:
                elapsed = time.monotonic() - started
                done.set()
                sampler.join(10)
            assert statuses == [200] * 200
            time.sleep(1.5)
            rounds = workers * (math.ceil(elapsed) + 2)  # checks the processes may have run
            assert sessions() - pg_before <= rounds, (elapsed, sessions() - pg_before)
            new_redis = own.info("stats")["total_connections_received"] - redis_before
            assert new_redis <= rounds, (elapsed, new_redis)
            # At once: each process's check connection at most, beside what was open before.
            assert peak["pg"] <= open_before + workers, peak
    finally:
        own.close()
        web.stop()
