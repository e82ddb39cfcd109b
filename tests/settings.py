"""Settings for the test suite: config/settings.py with test defaults for the environment.

Real services, never mocks: PostgreSQL and Redis on loopback (override with DATABASE_URL,
REDIS_URL, CELERY_BROKER_URL). Under pytest-xdist each test process gets its own Redis database
and cache prefix, as pytest-django gives it its own PostgreSQL database.
"""

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_index = int(_worker.removeprefix("gw") or 0) if _worker.startswith("gw") else 0

os.environ.setdefault("CONVEYOR_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/conveyor")
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{1 + _index}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"conveyor-test-{_index}")
os.environ.setdefault("JOB_HEARTBEAT_SECONDS", "0.5")
os.environ.setdefault("JOB_HEARTBEAT_TIMEOUT_SECONDS", "3")
os.environ.setdefault("JOB_CANCEL_GRACE_SECONDS", "1")
os.environ.setdefault("JOB_TIMEOUT_GRACE_SECONDS", "2")
os.environ.setdefault("JOB_STALLED_AFTER_SECONDS", "2")
os.environ.setdefault("WEBHOOK_RETRY_BASE_SECONDS", "0.2")
os.environ.setdefault("WEBHOOK_TIMEOUT_SECONDS", "2")
os.environ.setdefault("WORKER_SHUTDOWN_GRACE_SECONDS", "4")
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
os.environ.setdefault("BENCHMARK_ENDPOINTS", "true")

from config.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

CONVEYOR_JOB_TYPE_MODULES = [*CONVEYOR_JOB_TYPE_MODULES, "tests.support.job_types"]  # noqa: F405
