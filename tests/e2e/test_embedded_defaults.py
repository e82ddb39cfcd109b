"""With nothing configured, `make run` serves on an embedded PostgreSQL (config/devdb.py), with
Celery's filesystem transport and a file cache under var/: what a fresh checkout does on a bare
machine. The rest of the suite runs on the machine's PostgreSQL (DATABASE_URL); these tests
alone start the embedded server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import psutil
import psycopg
import pytest

from tests.support.processes import ROOT, ManagedProcess, free_port, wait_for

pytestmark = [pytest.mark.e2e]

_CONFIGURATION = {
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_CACHE_URL",
    "CELERY_BROKER_URL",
    "CONVEYOR_ENV",
    "SECRET_KEY",
    "DJANGO_SETTINGS_MODULE",
    "PYTEST_XDIST_WORKER",
}


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Path]:
    """Where the checkout's var/ and .env go. Not under pytest's base directory: run as root, the
    server runs as another user, which must reach its data directory, and pytest takes the
    others' access to its base directory away whenever another session starts."""
    with tempfile.TemporaryDirectory(prefix="conveyor-embedded-") as directory:
        yield Path(directory)


def fresh_env(local: Path, tmp_path: Path) -> dict[str, str]:
    """A developer's shell with nothing set; the checkout's var/ and .env are ``local``'s."""
    env = {k: v for k, v in os.environ.items() if k not in _CONFIGURATION}
    env.update(
        {
            "CONVEYOR_VAR_DIR": str(local / "var"),
            "CONVEYOR_ENV_FILE": str(local / ".env"),
            "TMPDIR": str(tmp_path),  # the beat schedule and the metrics samples
            "PYTHONUNBUFFERED": "1",
            "WEB_CONCURRENCY": "1",
            "WORKER_CONCURRENCY": "1",
            "HEAVY_CONCURRENCY": "1",
            "WEBHOOK_CONCURRENCY": "2",
            **{
                name: str(free_port())
                for name in (
                    "WORKER_METRICS_PORT",
                    "HEAVY_METRICS_PORT",
                    "WEBHOOK_METRICS_PORT",
                    "SCHEDULER_METRICS_PORT",
                )
            },
        }
    )
    return env


def make_run(env: dict[str, str], tmp_path: Path, port: int, name: str) -> ManagedProcess:
    """`make run` as the README says, minus `install` (the suite's virtualenv is installed)."""
    argv = ["make", "-o", "install", "run", f"ENV_FILE={env['CONVEYOR_ENV_FILE']}"]
    return ManagedProcess(name, argv, {**env, "PORT": str(port)}, tmp_path / f"{name}.log")


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def call(base: str, method: str, path: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            return response.status == 200
    except (HTTPError, OSError):
        return False


def env_file_url(local: Path) -> str:
    lines = (local / ".env").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith("DATABASE_URL="))


def interrupt(process: ManagedProcess, timeout: float = 60) -> None:
    """Ctrl-C in the terminal: SIGINT to the whole foreground process group."""
    os.killpg(process.pid, signal.SIGINT)
    process.proc.wait(timeout)


def postgres_running(data: Path) -> bool:
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except ProcessLookupError:
        return False
    return True


def test_make_run_serves_on_embedded_postgresql_with_nothing_configured(
    local: Path, tmp_path: Path
) -> None:
    env = fresh_env(local, tmp_path)
    data = local / "var" / "postgres"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = make_run(env, tmp_path, port, "make-run")
    second: ManagedProcess | None = None
    try:
        wait_for(lambda: ready(base), timeout=120, interval=0.5)
        url = env_file_url(local)
        assert "CONVEYOR_ENV=development" in (local / ".env").read_text().splitlines()
        with psycopg.connect(url) as pg:
            version = pg.execute("SHOW server_version_num").fetchone()
            directory = pg.execute("SHOW data_directory").fetchone()
        assert version is not None
        assert int(version[0]) >= 180000  # the wheel's PostgreSQL 18, not the machine's
        assert directory is not None
        assert Path(directory[0]) == data

        key = json.loads((local / "var" / "demo-client.json").read_text())["api_key"]
        job = call(
            base,
            "POST",
            "/api/v1/jobs",
            key,
            {"type": "diagnostics.echo", "input": {"message": "embedded"}},
        )
        assert job["status"] == "queued"

        def finished() -> dict | None:
            current = call(base, "GET", f"/api/v1/jobs/{job['id']}", key)
            return current if current["status"] == "succeeded" else None

        done = wait_for(finished, timeout=30, interval=0.2)
        assert done["result"] == {"message": "embedded", "attempt": 1}
        assert (local / "var" / "broker").is_dir()
        assert "wake-up relay listening" in run.output()

        # The README's commands, in another terminal with nothing exported, reach the same
        # server through .env.
        created = manage(env, "create_client", "acme")
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["api_key"].startswith("cvk_")
        stats = manage(env, "queue_stats")
        assert stats.returncode == 0, stats.stderr

        # A second `make run` meanwhile reuses the server (its web cannot bind the same port
        # and it stops), and leaves the server to the first one.
        (tmp_path / "second").mkdir()
        second_env = {**fresh_env(local, tmp_path), "TMPDIR": str(tmp_path / "second")}
        second = make_run(second_env, tmp_path, port, "second-make-run")
        second.proc.wait(120)
        assert postgres_running(data)
        assert ready(base)
        time.sleep(1)  # a loop of relay failures would show within its reconnect interval
    finally:
        for process in (second, run):
            if process is not None and process.proc.poll() is None:
                interrupt(process)
    output = run.output()
    assert not postgres_running(data), "Ctrl-C left the embedded PostgreSQL running"
    assert "Traceback" not in output, output[-4000:]
    assert " ERROR " not in output, output[-4000:]


def test_make_run_starts_again_after_a_run_killed_with_its_server(
    local: Path, tmp_path: Path
) -> None:
    """A `make run` killed outright (SIGKILL: no clean-up), its PostgreSQL too, leaves a stale
    postmaster.pid and registration behind: the next `make run` starts the server again, and
    stops it at the end."""
    env = fresh_env(local, tmp_path)
    data = local / "var" / "postgres"
    port = free_port()
    first = make_run(env, tmp_path, port, "killed-run")
    wait_for(lambda: ready(f"http://127.0.0.1:{port}"), timeout=120, interval=0.5)
    tree = [psutil.Process(first.pid), *psutil.Process(first.pid).children(recursive=True)]
    for process in tree:
        process.kill()
    psutil.wait_procs(tree, timeout=20)
    assert postgres_running(data)  # the server runs in a session of its own
    postmaster = psutil.Process(int((data / "postmaster.pid").read_text().split()[0]))
    family = [postmaster, *postmaster.children()]
    postmaster.kill()
    psutil.wait_procs(family, timeout=20)
    assert (data / "postmaster.pid").exists()
    assert not postgres_running(data)

    port = free_port()
    again = make_run(env, tmp_path, port, "make-run-again")
    try:
        wait_for(lambda: ready(f"http://127.0.0.1:{port}"), timeout=120, interval=0.5)
    finally:
        if again.proc.poll() is None:
            interrupt(again)
    output = again.output()
    assert not postgres_running(data), "Ctrl-C left the embedded PostgreSQL running"
    assert "Traceback" not in output, output[-4000:]
    assert " ERROR " not in output, output[-4000:]


def test_devdb_stop_stops_the_server_under_a_running_supervisor(
    local: Path, tmp_path: Path
) -> None:
    """`make clean` stops the server first (`python -m config.devdb stop`), whoever started it;
    the supervisor then finds it gone and ends quietly."""
    env = fresh_env(local, tmp_path)
    data = local / "var" / "postgres"
    argv = [sys.executable, "-m", "config.devdb", "run", "--", "sleep", "120"]
    supervisor = ManagedProcess("devdb", argv, env, tmp_path / "devdb.log")
    try:
        supervisor.wait_for_output("embedded PostgreSQL ready")
        assert postgres_running(data)
        stopped = subprocess.run(
            [sys.executable, "-m", "config.devdb", "stop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stopped.returncode == 0, stopped.stderr
        assert f"embedded PostgreSQL stopped ({data})" in stopped.stderr
        assert not postgres_running(data)
    finally:
        interrupt(supervisor)
    assert "Traceback" not in supervisor.output(), supervisor.output()
    again = subprocess.run(
        [sys.executable, "-m", "config.devdb", "stop"], cwd=ROOT, env=env, capture_output=True
    )
    assert again.returncode == 0
    assert again.stderr == b""  # nothing to stop


def test_manage_commands_without_make_run_say_what_is_missing(local: Path, tmp_path: Path) -> None:
    """With neither `make run`'s .env nor DATABASE_URL, `manage.py` refuses with a clear
    message: production settings (the default) first, then where the database comes from."""
    env = fresh_env(local, tmp_path)
    refused = manage(env, "check")
    assert refused.returncode != 0
    assert "Refusing to start with incomplete or insecure production settings" in refused.stderr
    assert "DATABASE_URL is not set" in refused.stderr

    env_file = Path(env["CONVEYOR_ENV_FILE"])
    subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), f"ENV_FILE={env_file}", str(env_file)],
        cwd=local,
        check=True,
        capture_output=True,
    )
    assert "CONVEYOR_ENV=development" in env_file.read_text().splitlines()
    development = manage(env, "check")
    assert development.returncode != 0
    assert "`make run` starts an embedded PostgreSQL" in development.stderr
    # The environment wins over the file: production stays production.
    overridden = manage({**env, "CONVEYOR_ENV": "production"}, "check")
    assert "production settings" in overridden.stderr
