"""The one Celery app.

Configuration comes from Django settings under the ``CELERY_`` namespace (config/settings.py).
Task code lives in ``workers/``; the web process only publishes by task name through
``apps.jobs.dispatch``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("conveyor", fixups=["config.celery_fixup:fixup"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.include = ["workers.tasks"]
