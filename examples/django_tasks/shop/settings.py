"""Settings of the example shop: a Django project whose tasks run on Conveyor.

Only what the tasks framework needs: no database, no middleware. ``CONVEYOR_URL`` and
``CONVEYOR_API_KEY`` (from ``manage.py create_client`` on the Conveyor side) say where to submit.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-shop-not-a-secret")
DEBUG = True
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["shop"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"

TASKS = {
    "default": {
        "BACKEND": "conveyor_client.django.ConveyorBackend",
        # The queues this project's tasks may name; each is a pool on the Conveyor side.
        "QUEUES": ["default", "reports"],
        "OPTIONS": {
            "URL": os.environ.get("CONVEYOR_URL", "http://127.0.0.1:8000"),
            "API_KEY": os.environ.get("CONVEYOR_API_KEY", ""),
            "TIMEOUT": 10,
        },
    }
}
