"""Real processes for end-to-end tests: Celery workers, the scheduler, gunicorn.

Every process gets the test database (the one pytest-django created) and the test process's
Redis database through its environment, runs on loopback only, and is stopped (then killed) when
the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; its value, or AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def database_url() -> str:
    """A URL for the database the tests run against (pytest-django's test database)."""
    s = connection.settings_dict
    auth = s["USER"] or "postgres"
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = s["HOST"] or "127.0.0.1"
    if host.startswith("/"):  # a Unix socket directory
        return f"postgres://{auth}@/{s['NAME']}?host={host}"
    return f"postgres://{auth}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


def service_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    # Every value below is explicit: the process must not recompute tests/settings.py's
    # per-process defaults over the ones given here.
    env.pop("CONVEYOR_TEST_DEFAULTED", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CACHE_KEY_PREFIX": settings.CACHE_KEY_PREFIX,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-3000:]}")
            return text in self.output()

        try:
            wait_for(seen, timeout=timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{self.name}: {exc}\n{self.output()[-3000:]}") from None

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the process and its children (a machine that vanishes)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        self._log.close()


def start_worker(
    tmp_path: Path,
    *,
    queues: str = "default",
    concurrency: int = 2,
    name: str = "worker",
    pool: str = "prefork",
    relay: bool = True,
    extra_args: list[str] | None = None,
    ready_timeout: float = 30,
    **env: str,
) -> ManagedProcess:
    argv = [
        str(VENV_BIN / "celery"),
        "-A",
        "config",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-n",
        f"{name}-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "info",
        *(["--relay"] if relay else []),
        *(extra_args or []),
    ]
    process = ManagedProcess(name, argv, service_env(**env), tmp_path / f"{name}.log")
    _wait_ready(process, "ready.", ready_timeout)
    return process


def start_scheduler(tmp_path: Path, *, ready_timeout: float = 30, **env: str) -> ManagedProcess:
    """The maintenance worker with its embedded beat, as the Procfile runs it."""
    argv = scheduler_argv(tmp_path)
    process = ManagedProcess("scheduler", argv, service_env(**env), tmp_path / "scheduler.log")
    _wait_ready(process, "ready.", ready_timeout)
    return process


def _wait_ready(process: ManagedProcess, text: str, timeout: float) -> None:
    """Wait for ``text`` in the output; a process that is not ready in time is stopped, so that
    a failed start leaves nothing running."""
    try:
        process.wait_for_output(text, timeout=timeout)
    except BaseException:
        process.stop()
        raise


def scheduler_argv(tmp_path: Path) -> list[str]:
    return [
        str(VENV_BIN / "celery"),
        "-A",
        "config",
        "worker",
        "-B",
        "--relay",
        "-Q",
        "maintenance",
        "-c",
        "1",
        "-n",
        f"scheduler-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
        "-s",
        str(tmp_path / "beat-schedule"),
        "-l",
        "info",
    ]


def start_web(
    tmp_path: Path, *, workers: int = 1, ready_timeout: float = 30, **env: str
) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [
        str(VENV_BIN / "gunicorn"),
        "-c",
        "config/gunicorn.py",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
    ]
    process = ManagedProcess("web", argv, service_env(**env), tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    _wait_ready(process, "Booting worker", ready_timeout)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(answers, timeout=20, interval=0.1)
    return process, base
