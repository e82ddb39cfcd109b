"""Deployment files: docker-compose.yml is accepted by Compose (when a Compose binary is on this
machine) and has the structure docs/operations.md describes; it runs the Procfile's process
types."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prerequisites import missing
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, service_env, wait_for

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SECRET = "k3Jd9f0s8Hq2mZx7Lp4Wv1Nb6Tc5Ry0Ue3Ia8Oo2Sd"


def compose_command() -> list[str] | None:
    """``docker compose`` (the v2 plugin) or ``docker-compose`` (v1), whichever is here."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        missing("no docker compose / docker-compose binary here (the YAML checks still run)")
    clean = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


FLOWER_AUTH = "ops:k9Pq2Zs7Lw4Nx1Bv"


def test_compose_accepts_the_file() -> None:
    result = compose_config(SECRET_KEY=SECRET, FLOWER_BASIC_AUTH=FLOWER_AUTH)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    result = compose_config(FLOWER_BASIC_AUTH=FLOWER_AUTH)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_compose_refuses_to_start_flower_without_a_password() -> None:
    result = compose_config(SECRET_KEY=SECRET)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_flower_asks_for_a_password_and_listens_on_loopback_only(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert all(str(port).startswith("127.0.0.1:") for port in flower["ports"])


def test_flower_refuses_a_request_without_the_password(tmp_path: Path) -> None:
    """Flower as docker-compose runs it (its password from FLOWER_BASIC_AUTH), for real."""
    port = free_port()
    flower = ManagedProcess(
        "flower",
        [
            str(VENV_BIN / "celery"),
            "-A",
            "config",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        service_env(FLOWER_BASIC_AUTH=FLOWER_AUTH),
        tmp_path / "flower.log",
    )
    try:
        url = f"http://127.0.0.1:{port}/api/workers"
        wait_for(lambda: _status(url) is not None, timeout=30, interval=0.2)
        assert _status(url) == 401
        assert _status(url, auth=FLOWER_AUTH) == 200
        assert _status(url, auth="ops:wrong-password") == 401
    finally:
        flower.stop()


def _status(url: str, auth: str | None = None) -> int | None:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def procfile_types() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_has_every_service_of_the_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"db", "db-replica", "redis", "web", "worker-default", "scheduler", "flower"} <= set(
        services
    )
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    assert set(compose["volumes"]) >= {"db-data", "db-replica-data", "redis-data"}


def test_conveyor_services_run_procfile_types_with_the_required_settings(
    compose: dict[str, Any],
) -> None:
    types = procfile_types()
    for name in ("web", "worker-default", "scheduler"):
        service = compose["services"][name]
        command = service["command"]
        assert command[0] == "bin/run-process", name
        assert command[1] in types, f"{name} runs {command[1]!r}, not a Procfile type"
        environment = service["environment"]
        for variable in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CONVEYOR_ENV"):
            assert variable in environment, (name, variable)
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    assert "8000:8000" in compose["services"]["web"]["ports"]
    assert compose["services"]["web"]["environment"]["DATABASE_REPLICA_URLS"]


def test_workers_get_time_to_finish_their_jobs_on_shutdown(compose: dict[str, Any]) -> None:
    types = procfile_types()
    for name, process_type in (("worker-default", "worker"), ("scheduler", "scheduler")):
        assert "REMAP_SIGTERM=SIGQUIT" in types[process_type]
        grace = compose["services"][name]["stop_grace_period"]
        # Longer than the worker's own grace (WORKER_SHUTDOWN_GRACE_SECONDS, 20 s by default).
        assert int(re.fullmatch(r"(\d+)s", grace).group(1)) > 20  # type: ignore[union-attr]


def test_every_worker_process_type_serves_metrics_on_its_own_port() -> None:
    ports = [
        re.search(r"--metrics-port \$\{\w+:-(\d+)\}", command)
        for name, command in procfile_types().items()
        if "celery" in command and " worker" in command
    ]
    assert all(ports)
    assert len({match.group(1) for match in ports if match}) == len(ports)


def test_run_process_refuses_an_unknown_process_type() -> None:
    result = subprocess.run(
        [str(ROOT / "bin" / "run-process"), "no-such-type"], capture_output=True, text=True
    )
    assert result.returncode == 64
    assert "no process type 'no-such-type'" in result.stderr
