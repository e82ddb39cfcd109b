"""Samples directories of process groups (apps/core/metrics_dirs.py), in a fresh interpreter:
``prepare`` changes the environment and prometheus-client's mode for the whole process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
import prometheus_client.values  # imported first, as Flower's Celery plugin does
from apps.core import metrics_dirs
path = metrics_dirs.prepare("worker")
from apps.core import metrics
metrics.jobs_submitted_total.labels("t", "queued").inc()
print(json.dumps({
    "path": str(path) if path else None,
    "env": os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
    "multiprocess": metrics.multiprocess_dir() is not None,
    "files": sorted(os.listdir(path)) if path else [],
    "pid": os.getpid(),
}))
"""


def run(tmp_path: Path, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={**os.environ, "METRICS_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_a_group_gets_its_own_empty_directory_and_multiprocess_values(tmp_path: Path) -> None:
    dead = tmp_path / "worker-999999999"
    dead.mkdir()
    (dead / "counter_1.db").write_bytes(b"")
    alive = tmp_path / f"web-{os.getpid()}"
    alive.mkdir()
    unrelated = tmp_path / "notes"
    unrelated.mkdir()

    result = run(tmp_path)

    assert result["path"] == str(tmp_path / f"worker-{result['pid']}")
    assert result["env"] == result["path"]
    assert result["multiprocess"] is True
    assert f"counter_{result['pid']}.db" in result["files"]
    assert all(name.endswith(f"_{result['pid']}.db") for name in result["files"])
    assert not dead.exists()  # its process is gone
    assert alive.exists()
    assert unrelated.exists()


def test_metrics_off_means_in_process_values_and_no_directory(tmp_path: Path) -> None:
    result = run(tmp_path, METRICS_ENABLED="false", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert result["path"] is None
    assert result["env"] is None
    assert result["multiprocess"] is False
    assert list(tmp_path.iterdir()) == []
