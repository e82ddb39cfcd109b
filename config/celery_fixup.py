"""Celery's Django fix-up, minus the per-task database disconnect.

Celery's stock fix-up closes every Django connection before and after each task (and, with
psycopg's pool under prefork, closes the whole pool). A worker then reconnects for every job and
runs at half speed or worse (celery#4116). Here a task ends the way a Django request does:
``close_old_connections()`` keeps a healthy connection open for the next task (``CONN_MAX_AGE``
decides its lifetime) and drops one that saw an error.
"""

from __future__ import annotations

import os
from typing import Any

from celery.fixups.django import DjangoFixup, DjangoWorkerFixup  # type: ignore[attr-defined]


class ConnectionKeepingWorkerFixup(DjangoWorkerFixup):
    def on_task_prerun(self, sender: Any, **kwargs: Any) -> None:
        self._db.close_old_connections()

    def on_task_postrun(self, sender: Any, **kwargs: Any) -> None:
        self._db.close_old_connections()


class ConveyorDjangoFixup(DjangoFixup):
    @property
    def worker_fixup(self) -> DjangoWorkerFixup:
        if self._worker_fixup is None:  # type: ignore[has-type]
            self._worker_fixup = ConnectionKeepingWorkerFixup(self.app)
        return self._worker_fixup

    @worker_fixup.setter
    def worker_fixup(self, value: DjangoWorkerFixup) -> None:
        self._worker_fixup = value


def fixup(app: Any) -> DjangoFixup | None:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        fixup = ConveyorDjangoFixup(app)
        fixup.install()
        return fixup
    return None
