"""How fast the admin dashboard renders over ten million jobs, and what its rollup costs.

    BENCH_DB=bench_dash .venv/bin/python bench/dashboard.py --jobs 10000000

Creates (drops first) its own PostgreSQL database and fills it server-side with
``generate_series``: ``--jobs`` finished jobs spread over the last 26 hours (93 % succeeded, 5 %
failed, 2 % canceled; 12 job types on 6 queues; 200 clients, a few of them busy), plus a live
part (queued jobs waiting up to 10 minutes, running jobs, a few past their timeout, scheduled and
retrying jobs, failing webhook deliveries). Then it times the rollup (its catch-up over a day
from nothing, and a steady run), and the dashboard as a viewer sees it, through Django's test
client in this process: the admin index (``/admin/``, the whole page) and its refresh
(``/admin/dashboard.json``), ``--requests`` each after a warm-up; p50/p99/max in ms.
docs/benchmarks.md ("dashboard") keeps the figures. Nothing else is started; the database is
dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = os.environ.get("BENCH_DB", "conveyor_dashboard")
if not re.fullmatch(r"[a-z_][a-z0-9_]*", DB_NAME):
    raise SystemExit(f"BENCH_DB must be a plain lower-case identifier, not {DB_NAME!r}")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")

CLIENTS = """
INSERT INTO clients_apiclient (name, is_active, unlimited, weight, webhook_secret,
  previous_webhook_secret, created_at)
SELECT 'client-' || g, true, true, 1, 'whsec_bench', '', now() FROM generate_series(1, 200) g
"""

# 12 types on 6 queues (the same index in both lists); a client drawn with a skew (the first
# few are busy).
TYPES = [
    *("email.send", "email.digest", "report.daily", "report.export", "media.thumb"),
    *("media.transcode", "sync.crm", "sync.billing", "diagnostics.echo", "webhook.relay"),
    *("ml.score", "ml.train"),
]
QUEUES = [
    *("default", "default", "reports", "reports", "media", "heavy", "sync", "sync", "default"),
    *("default", "ml", "ml"),
]
SHAPE = {"types": TYPES, "queues": QUEUES}
FINISHED = """
INSERT INTO jobs_job (id, client_id, type, status, input, priority, queue, attempts,
  max_attempts, timeout_seconds, webhook_events, metadata, created_at, started_at, finished_at,
  cancel_requested, version, request_id, task_id, worker)
SELECT gen_random_uuid(), (SELECT min(id) FROM clients_apiclient) + floor(200 * r1 ^ 3)::int,
  (%(types)s::text[])[t], CASE WHEN r2 < 0.93 THEN 'succeeded' WHEN r2 < 0.98 THEN 'failed'
  ELSE 'canceled' END, '{"n": 1}', 1, (%(queues)s::text[])[t], 1, 3, 300, '[]', '{}',
  f - make_interval(secs => 5 + r1 * 60), f - make_interval(secs => r1 * 5), f, false, 3, '',
  '', ''
FROM (
  SELECT random() AS r1, random() AS r2, 1 + floor(random() * 12)::int AS t,
    now() - make_interval(secs => random() * 26 * 3600) AS f
  FROM generate_series(1, %(n)s)
) s
"""

LIVE = """
INSERT INTO jobs_job (id, client_id, type, status, input, priority, queue, attempts,
  max_attempts, timeout_seconds, webhook_events, metadata, created_at, started_at, run_at,
  enqueued_at, cancel_requested, version, request_id, task_id, worker)
SELECT gen_random_uuid(), (SELECT min(id) FROM clients_apiclient) + floor(200 * r1 ^ 3)::int,
  (%(types)s::text[])[t], %(status)s, '{"n": 1}', 1, (%(queues)s::text[])[t], 0, 3,
  %(timeout)s, '[]', '{}',
  now() - make_interval(secs => random() * %(age)s),
  CASE WHEN %(status)s::varchar = 'running' THEN now() - make_interval(secs => %(started)s) END,
  CASE WHEN %(status)s::varchar IN ('scheduled', 'retrying')
    THEN now() + make_interval(secs => random() * 3600) END,
  now() - make_interval(secs => random() * %(age)s), false, 1, '', '', ''
FROM (SELECT random() AS r1, 1 + floor(random() * 12)::int AS t
  FROM generate_series(1, %(n)s)) s
"""

# The jobs table's indexes that back no constraint (the primary key and unique ones stay).
SECONDARY_INDEXES = """
SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'jobs_job'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
"""

DELIVERIES = """
INSERT INTO webhooks_webhookdelivery (job_id, client_id, event_type, sequence, webhook_id, url,
  job_snapshot, request_id, status, attempts, next_attempt_at, created_at, last_error)
SELECT id, client_id, 'job.failed', 3, 'msg_' || replace(id::text, '-', ''),
  'https://example.com/hook', '{}', '', CASE WHEN random() < 0.5 THEN 'pending' ELSE 'failed'
  END, 3, now() + interval '1 minute', finished_at, 'timeout'
FROM jobs_job WHERE status = 'failed' LIMIT %(n)s
"""


def timed(label: str, func: object, *args: object) -> object:
    started = time.perf_counter()
    result = func(*args)  # type: ignore[operator]
    print(f"{label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000_000, help="finished jobs")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="rows per INSERT")
    parser.add_argument("--queued", type=int, default=20_000, help="jobs waiting")
    parser.add_argument("--running", type=int, default=400, help="jobs running")
    parser.add_argument("--requests", type=int, default=60, help="timed page views of each kind")
    parser.add_argument("--keep", action="store_true", help="keep the database (no refill)")
    parser.add_argument("--reuse", action="store_true", help="use a database kept by --keep")
    args = parser.parse_args()

    import psycopg

    if not args.reuse:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
    os.environ.update(
        DATABASE_URL=f"{PG}/{DB_NAME}",
        REDIS_URL=REDIS,
        DJANGO_SETTINGS_MODULE="config.settings",
        CONVEYOR_ENV=os.environ.get("CONVEYOR_ENV", "development"),
        CACHE_KEY_PREFIX=os.environ.get("CACHE_KEY_PREFIX", "cv-bench-dashboard"),
        DEBUG="false",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("DATABASE_REPLICA_URLS", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from apps.jobs.fleet import worker_gone, worker_heartbeat
    from apps.jobs.models import FinishedCount, FinishedCountMark
    from apps.jobs.throughput import finished_counts_roll_up
    from apps.staff.roles import ROLE_GROUPS

    if not args.reuse:
        call_command("migrate", "--noinput", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
            cursor.execute(CLIENTS)
            # Filling is faster without the secondary indexes; they are built again after.
            cursor.execute(SECONDARY_INDEXES)
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            started = time.perf_counter()
            for done in range(0, args.jobs, args.chunk):
                cursor.execute(FINISHED, {**SHAPE, "n": min(args.chunk, args.jobs - done)})
                print(f"  {done + args.chunk:>10} finished jobs", flush=True)
            print(f"fill: {time.perf_counter() - started:.0f} s", flush=True)
            started = time.perf_counter()
            for _, definition in indexes:
                cursor.execute(definition)
            print(f"{len(indexes)} indexes built: {time.perf_counter() - started:.0f} s")
            live = [
                ("queued", args.queued, 600, 300, 0),
                ("running", args.running - 10, 60, 300, 30),
                ("running", 10, 60, 60, 7200),  # past their timeout
                ("scheduled", 5000, 600, 300, 0),
                ("retrying", 1000, 600, 300, 0),
            ]
            for status, n, age, timeout, since in live:
                cursor.execute(
                    LIVE,
                    {
                        **SHAPE,
                        **{"status": status, "n": n, "age": age, "timeout": timeout},
                        "started": since,
                    },
                )
            cursor.execute(DELIVERIES, {"n": 50_000})
            timed("vacuum analyze", cursor.execute, "VACUUM ANALYZE")
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('jobs_job'))")
            print(f"jobs table with indexes: {cursor.fetchone()[0]}")
    if not args.reuse:
        FinishedCount.objects.all().delete()
        FinishedCountMark.objects.all().delete()
    target = timezone.now()
    started = time.perf_counter()
    runs = 0
    while not runs or FinishedCountMark.objects.get().counted_to < target:
        finished_counts_roll_up()
        runs += 1
    print(
        f"rollup catch-up ({'since the kept run' if args.reuse else 'over a day'}): "
        f"{time.perf_counter() - started:.1f} s in {runs} runs, "
        f"{FinishedCount.objects.count()} rows"
    )
    steady = []
    for _ in range(5):
        started = time.perf_counter()
        finished_counts_roll_up()
        steady.append((time.perf_counter() - started) * 1000)
    print(f"rollup steady run (5 min recount): median {statistics.median(steady):.0f} ms")

    for name in ("w1@bench", "w2@bench"):
        worker_heartbeat(name=name, queues=["default", "reports", "media", "sync"], processes=4)
    user, _ = User.objects.get_or_create(username="bench-viewer", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name=ROLE_GROUPS["viewer"]))
    browser = Client()
    browser.force_login(user)
    print(f"{'page':<24} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for url in ("/admin/", "/admin/dashboard.json"):
        for _ in range(3):
            assert browser.get(url).status_code == 200
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            response = browser.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        times.sort()
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        print(f"{url:<24} {statistics.median(times):>8.0f} {p99:>8.0f} {times[-1]:>8.0f}")
    for name in ("w1@bench", "w2@bench"):
        worker_gone(name=name)
    if not args.keep:
        connection.close()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
