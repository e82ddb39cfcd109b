"""The `conveyor` command, run as a subprocess against the live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conveyor_client.cli import EXIT_CODES, EXIT_JOB_FAILED

CONVEYOR = str(Path(sys.executable).parent / "conveyor")


@pytest.fixture
def cli(conveyor_server):
    env = {
        **os.environ,
        "CONVEYOR_URL": conveyor_server.url,
        "CONVEYOR_API_KEY": conveyor_server.tenant.api_key,
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CONVEYOR, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
        )

    return run


def test_submit_wait_json_prints_the_finished_job(cli) -> None:
    done = cli("--json", "submit", "diagnostics.echo", "--input", '{"message": "cli"}', "--wait")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    assert job["result"] == {"message": "cli", "attempt": 1}


def test_submit_wait_draws_the_jobs_progress(cli, tmp_path) -> None:
    source = tmp_path / "input.json"
    source.write_text('{"message": "bar", "sleep_seconds": 0.6, "progress_steps": 3}')
    done = cli("submit", "diagnostics.echo", "--input", f"@{source}", "--wait")
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr
    assert "[" in done.stderr
    assert "succeeded" in done.stdout


def test_input_from_stdin_and_a_human_get(cli) -> None:
    made = cli("--json", "submit", "diagnostics.echo", "-i", "@-", "--delay", "600",
               stdin='{"message": "in"}')  # fmt: skip
    assert made.returncode == 0, made.stderr
    job_id = json.loads(made.stdout)["id"]
    shown = cli("get", job_id)
    assert shown.returncode == 0
    assert job_id in shown.stdout
    assert "scheduled" in shown.stdout
    canceled = cli("--json", "cancel", job_id)
    assert json.loads(canceled.stdout)["status"] == "canceled"
    again = cli("cancel", job_id)
    assert again.returncode == EXIT_CODES["invalid_state"]
    assert "invalid_state" in again.stderr
    retried = cli("--json", "retry", job_id)
    assert retried.returncode == 0, retried.stderr


def test_ls_filters_and_prints_a_table(cli) -> None:
    label = uuid.uuid4().hex
    for n in range(3):
        cli("submit", "diagnostics.echo", "-i", json.dumps({"message": str(n)}), "-m", f"l={label}")
    table = cli("ls", "-m", f"l={label}", "--type", "diagnostics.echo")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["ID", "TYPE", "STATUS"]
    assert len(lines) == 4
    listed = json.loads(cli("--json", "ls", "-m", f"l={label}", "-n", "2").stdout)
    assert len(listed) == 2
    bad = cli("ls", "--status", "nonsense")
    assert bad.returncode == EXIT_CODES["validation_error"]


def test_exit_codes_follow_the_error_codes(cli, conveyor_server) -> None:
    missing = cli("get", str(uuid.uuid4()))
    assert missing.returncode == EXIT_CODES["not_found"]
    invalid = cli("--json", "submit", "diagnostics.echo", "-i", "{}")
    assert invalid.returncode == EXIT_CODES["validation_error"]
    assert json.loads(invalid.stderr)["error"]["details"]
    failed = cli("submit", "diagnostics.echo", "-i", '{"message": "x", "fail_permanently": true}',
                 "--wait", "-q")  # fmt: skip
    assert failed.returncode == EXIT_JOB_FAILED
    bad_key = subprocess.run(
        [CONVEYOR, "--url", conveyor_server.url, "--api-key", "nope", "types"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
    )
    assert bad_key.returncode == EXIT_CODES["not_authenticated"]
    assert cli("submit", "diagnostics.echo", "-i", "{not json").returncode == 2
    unreachable = cli("--url", "http://127.0.0.1:9", "types")
    assert unreachable.returncode == EXIT_CODES["connection_failed"]
    timed_out = cli("submit", "diagnostics.echo", "-i", '{"message": "t"}', "--delay", "600",
                    "--wait", "--timeout", "1", "-q")  # fmt: skip
    assert timed_out.returncode == EXIT_CODES["wait_timeout"]


def test_types_and_schedules(cli) -> None:
    types = cli("types")
    assert types.returncode == 0
    assert "diagnostics.echo" in types.stdout
    name = f"cli-{uuid.uuid4().hex[:8]}"
    made = cli("--json", "schedules", "create", name, "0 3 * * *", "diagnostics.echo",
               "-i", '{"message": "s"}', "--timezone", "Europe/Paris")  # fmt: skip
    assert made.returncode == 0, made.stderr
    schedule_id = json.loads(made.stdout)["id"]
    assert name in cli("schedules", "ls").stdout
    assert name in cli("schedules", "get", schedule_id).stdout
    paused = json.loads(cli("--json", "schedules", "update", schedule_id, "--disable").stdout)
    assert paused["enabled"] is False
    fired = json.loads(cli("--json", "schedules", "trigger", schedule_id).stdout)
    assert fired["schedule_id"] == schedule_id
    assert cli("schedules", "delete", schedule_id).returncode == 0
    assert cli("schedules", "get", schedule_id).returncode == EXIT_CODES["not_found"]
    bad = cli("schedules", "create", "x", "99 * * * *", "diagnostics.echo")
    assert bad.returncode == EXIT_CODES["validation_error"]
