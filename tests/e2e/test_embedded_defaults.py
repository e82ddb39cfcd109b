"""With nothing configured, Conveyor runs on its embedded defaults: SQLite, Celery's filesystem
transport and a file cache under var/. This is what `make run` starts on a bare machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import (
    ROOT,
    VENV_BIN,
    ManagedProcess,
    free_port,
    scheduler_argv,
    wait_for,
)

pytestmark = [pytest.mark.e2e]

_SERVICE_VARIABLES = {"DATABASE_URL", "REDIS_URL", "REDIS_CACHE_URL", "CELERY_BROKER_URL"}


def embedded_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARIABLES}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CONVEYOR_ENV": "development",
            "CONVEYOR_VAR_DIR": str(var_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def call(base: str, method: str, path: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_submit_and_run_on_sqlite_and_the_filesystem_broker(tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "var")
    manage(env, "migrate", "--noinput", "-v", "0")
    key = json.loads(manage(env, "create_client", "local"))["api_key"]
    port = free_port()
    web = ManagedProcess(
        "web",
        [
            str(VENV_BIN / "gunicorn"),
            "config.wsgi",
            "-c",
            "config/gunicorn.py",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
        ],
        env,
        tmp_path / "web.log",
    )
    worker = ManagedProcess(
        "worker",
        [
            str(VENV_BIN / "celery"),
            "-A",
            "config",
            "worker",
            "-Q",
            "default",
            "-c",
            "1",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "info",
        ],
        env,
        tmp_path / "worker.log",
    )
    # The scheduler as the Procfile runs it: beat, maintenance and the relay, which has nothing
    # to listen to on SQLite and must say so once instead of failing in a loop.
    scheduler = ManagedProcess(
        "scheduler",
        scheduler_argv(tmp_path),
        env,
        tmp_path / "scheduler.log",
    )
    processes = (web, worker, scheduler)
    try:
        web.wait_for_output("Booting worker")
        worker.wait_for_output("ready.")
        scheduler.wait_for_output("wake-up relay not started")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(base), timeout=20)
        job = call(
            base,
            "POST",
            "/api/v1/jobs",
            key,
            {"type": "diagnostics.echo", "input": {"message": "embedded", "fail_times": 0}},
        )
        assert job["status"] == "queued"

        def finished() -> dict | None:
            current = call(base, "GET", f"/api/v1/jobs/{job['id']}", key)
            return current if current["status"] == "succeeded" else None

        done = wait_for(finished, timeout=30, interval=0.2)
        assert done["result"] == {"message": "embedded", "attempt": 1}
        assert (tmp_path / "var" / "conveyor.sqlite3").exists()
        assert (tmp_path / "var" / "broker").is_dir()
        time.sleep(2)  # a loop of failures would show within the relay's reconnect interval
    finally:
        for process in processes:
            process.stop()
    for process in processes:
        output = process.log_path.read_text(errors="replace")
        assert "Traceback" not in output, (process.name, output[-3000:])
        assert " ERROR " not in output, (process.name, output[-3000:])


def test_manage_commands_run_as_the_readme_shows_them_after_make_run(tmp_path: Path) -> None:
    """`make run` writes .env (CONVEYOR_ENV=development); with nothing exported, the README's
    `manage.py` lines then work instead of stopping at the production settings check."""
    env = embedded_env(tmp_path / "var")
    env.pop("CONVEYOR_ENV")
    env.pop("SECRET_KEY", None)
    env_file = tmp_path / ".env"
    env["CONVEYOR_ENV_FILE"] = str(env_file)
    refused = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "Refusing to start with insecure production settings" in refused.stderr

    subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), f"ENV_FILE={env_file}", str(env_file)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    assert "CONVEYOR_ENV=development" in env_file.read_text().splitlines()
    manage(env, "migrate", "--noinput", "-v", "0")
    created = json.loads(manage(env, "create_client", "acme"))
    assert created["api_key"].startswith("cvk_")
    assert "Traceback" not in manage(env, "queue_stats")
    # The environment wins over the file: production stays production.
    env["CONVEYOR_ENV"] = "production"
    overridden = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert overridden.returncode != 0


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=1):
            return True
    except OSError:
        return False
