"""A live Conveyor, started as `make serve` does: the Procfile under honcho (web, worker,
webhook pool, scheduler) on a loopback port, with a database of its own (created here, dropped
at the end), then `manage.py create_client` for two keys. The client's tests (conftest.py) and
its benchmark (../bench/client_bench.py) use it.

It runs from the repository's dev virtualenv (`make install-dev`), where conveyor_client is
installed editable, and uses DATABASE_URL's server and a Redis database of its own (8 + the
xdist index).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
PROCESSES = ("web", "worker", "worker-webhooks", "scheduler")


@dataclass(frozen=True)
class Tenant:
    name: str
    api_key: str
    webhook_secret: str


@dataclass(frozen=True)
class LiveServer:
    url: str
    env: dict[str, str]
    tenant: Tenant
    other: Tenant
    log: Path
    pid: int  # honcho's: the server's processes are its descendants

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database_urls(suffix: str) -> tuple[str, str]:
    """The admin URL (database ``postgres``) and the live server's own database URL."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/conveyor")
    parts = urlsplit(base)
    name = (parts.path.lstrip("/") or "conveyor") + suffix
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        name += f"_{worker}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    return admin, urlunsplit(parts._replace(path=f"/{name}"))


def _recreate_database(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"honcho exited early:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"Conveyor not ready in {timeout}s:\n{log.read_text(errors='replace')[-4000:]}"
    )


def _wait_workers(log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if text.count(" ready.") >= len(PROCESSES) - 1:  # every Celery process but web
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"workers not ready in {timeout}s:\n{log.read_text(errors='replace')[-4000:]}"
    )


# Both keys from one Django start-up (create_client prints one JSON object per call).
_CREATE_CLIENTS = """
import io, sys, django
django.setup()
from django.core.management import call_command
for name in sys.argv[1:]:
    call_command("create_client", name, "--unlimited")
"""


def _create_tenants(env: dict[str, str], names: tuple[str, ...]) -> list[Tenant]:
    output = subprocess.run(
        [str(VENV_BIN / "python"), "-c", _CREATE_CLIENTS, *names],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    tenants = []
    for name, line in zip(names, output.strip().splitlines(), strict=True):
        data = json.loads(line)
        tenants.append(Tenant(name, data["api_key"], data["webhook_secret"]))
    return tenants


def _redis_url() -> str:
    """The live server's own Redis database: the session keeps it running while this test
    process goes on to other files, whose Celery workers use the process's database (1 + N,
    tests/settings.py); sharing it, each would take the other's wake-ups and broker flushes."""
    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0) if worker.startswith("gw") else 0
    return urlunsplit(parts._replace(path=f"/{8 + index}"))


@contextmanager
def running(
    tmp: Path, *, web_concurrency: int = 1, database_suffix: str = "_client_live", **overrides: str
) -> Iterator[LiveServer]:
    """Conveyor running from the Procfile until the block ends; ``overrides``: environment."""
    admin_url, database_url = _database_urls(database_suffix)
    db_name = urlsplit(database_url).path.lstrip("/")
    _recreate_database(admin_url, db_name)
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CONVEYOR_ENV": "development",
        "CONVEYOR_ENV_FILE": "",
        "DATABASE_URL": database_url,
        "REDIS_URL": _redis_url(),
        "CACHE_KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "cv") + "-client-live",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "WEB_CONCURRENCY": str(web_concurrency),
        "BIND": f"127.0.0.1:{port}",  # loopback whatever CONVEYOR_ENV says
        "WORKER_CONCURRENCY": "2",
        "WEBHOOK_CONCURRENCY": "4",
        "WORKER_METRICS_PORT": str(_free_port()),
        "HEAVY_METRICS_PORT": str(_free_port()),
        "WEBHOOK_METRICS_PORT": str(_free_port()),
        "SCHEDULER_METRICS_PORT": str(_free_port()),
        "TMPDIR": str(tmp),
        "LOG_FORMAT": "plain",
        "ACCESS_LOG": "false",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
    env.pop("CELERY_BROKER_URL", None)
    log = tmp / "honcho.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "honcho"), "start", "-f", "Procfile", "-p", str(port), *PROCESSES],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        _wait_workers(log)
        tenants = _create_tenants(env, ("client-tests", "client-tests-other"))
        yield LiveServer(url, env, tenants[0], tenants[1], log, proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        _recreate_database(admin_url, db_name, drop_only=True)
