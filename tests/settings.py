"""Settings for the test suite: config/settings.py with test defaults for the environment.

Real services, never mocks: PostgreSQL and Redis on loopback (override with DATABASE_URL,
REDIS_URL, CELERY_BROKER_URL). Under pytest-xdist each test process (gw0, gw1, …) gets its own
Redis database (1 + its index) and cache prefix, as pytest-django gives it its own PostgreSQL
database (test_<name>_gwN): leave REDIS_URL and CACHE_KEY_PREFIX unset for a parallel run.
"""

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_index = int(_worker.removeprefix("gw") or 0) if _worker.startswith("gw") else 0

# The per-process defaults are recomputed in each process: pytest-xdist's controller imports
# these settings before it starts its workers, which inherit its environment, so a plain
# setdefault would hand every worker the controller's Redis database. DEFAULTED names what was
# defaulted here rather than set by the user (tests/support/processes.py drops it for the
# processes it starts, which get explicit values).
DEFAULTED = "CONVEYOR_TEST_DEFAULTED"
_defaulted = set(filter(None, os.environ.get(DEFAULTED, "").split(",")))
_per_process = {
    "REDIS_URL": f"redis://127.0.0.1:6379/{1 + _index}",
    "CACHE_KEY_PREFIX": f"conveyor-test-{_index}",
}
for _name, _value in _per_process.items():
    if _name not in os.environ or _name in _defaulted:
        os.environ[_name] = _value
        _defaulted.add(_name)
os.environ[DEFAULTED] = ",".join(sorted(_defaulted))
# A Redis or broker of the user's own is one for every xdist worker: tests/conftest.py refuses
# to run in parallel on it (the workers would empty each other's broker).
SHARED_SERVICES = sorted(
    name
    for name in ("REDIS_URL", "CELERY_BROKER_URL")
    if name in os.environ and name not in _defaulted
)

os.environ.setdefault("CONVEYOR_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/conveyor")
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
