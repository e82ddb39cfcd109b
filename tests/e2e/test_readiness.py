"""/readyz tells the truth about Redis: 503 while it is down, 200 once it is back.

The shared Redis of the suite is never touched: the test starts its own redis-server on a free
loopback port and a web process whose cache and broker point at it, kills it, and starts it
again on the same port.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import call
from tests.support.prerequisites import missing
from tests.support.processes import ManagedProcess, free_port, start_web, wait_for

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
        status, body = readyz(base)
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
