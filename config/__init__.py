"""Conveyor's wiring: settings, URLs, the Celery app, the database router."""

from .celery_app import app as celery_app

__all__ = ["celery_app"]
