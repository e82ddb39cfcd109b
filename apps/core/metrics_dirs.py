"""Where each process group keeps its Prometheus samples (prometheus-client multiprocess mode).

Gunicorn workers and Celery pool processes are separate processes; each writes its samples to
memory-mapped files in one directory, and the process that answers a scrape adds them up. Each
*group* (one gunicorn master and its workers; one Celery worker and its pool) gets its own
directory, ``$METRICS_DIR/<role>-<pid of the group's main process>``:

- the web's ``/metrics`` and a worker's metrics port each report their own group only, so
  Prometheus, which scrapes both, never counts a sample twice;
- a group's directory starts empty (counters of a previous run are not carried over as if
  they were current) and is removed when the group exits; directories of groups that died
  without cleaning up are removed by the next group that starts on the machine.

prometheus-client decides between in-process and multiprocess values when it is imported, from
``PROMETHEUS_MULTIPROC_DIR``. ``prepare`` runs before any Conveyor metric exists (in gunicorn's
master; in a Celery worker before Django starts) and makes prometheus-client choose again if it
was imported already: every ``celery`` command imports it at start-up, through Flower's CLI
plugin. Imports nothing from Django: gunicorn's master reads it before the app exists.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

_FALSE = {"0", "false", "no", "off"}
_ROLES = ("web", "worker")


def metrics_enabled() -> bool:
    return os.environ.get("METRICS_ENABLED", "true").strip().lower() not in _FALSE


def base_dir() -> Path:
    configured = os.environ.get("METRICS_DIR", "").strip()
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "conveyor-metrics"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_groups(base: Path) -> None:
    for entry in base.glob("*-*"):
        role, _, pid = entry.name.rpartition("-")
        if role in _ROLES and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def prepare(role: str) -> Path | None:
    """Create this process group's empty samples directory and point prometheus-client at it
    (``PROMETHEUS_MULTIPROC_DIR``, inherited by the processes forked later). None when metrics
    are off."""
    if "apps.core.metrics" in sys.modules:
        # Its metrics already hold in-process values: this process's samples would be missing
        # from the scrape. Loud, but not fatal: metrics never stop a process from working.
        logging.getLogger(__name__).error(
            "metrics: prepare(%r) ran after apps.core.metrics was imported", role
        )
    path: Path | None = None
    if metrics_enabled():
        base = base_dir()
        base.mkdir(parents=True, exist_ok=True)
        _remove_dead_groups(base)
        path = base / f"{role}-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return path


def remove(path: Path | None) -> None:
    """Remove a group's directory when the group exits."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def process_exited(pid: int) -> None:
    """Forget an exited process's live gauges (gunicorn's ``child_exit``)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
