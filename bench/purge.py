"""How fast the retention purge deletes finished jobs, to compare with the pipeline's rate.

    BENCH_DB=conveyor_purge .venv/bin/python bench/purge.py --jobs 50000

Creates (drops first) its own PostgreSQL database, fills it with ``--jobs`` finished jobs older
than the retention period, each with the history a real job leaves (``--events`` events, one
webhook delivery and one delivery attempt per job), inserted server-side with
``generate_series``; then times ``jobs_purge_finished`` at each ``--batch-sizes`` and prints
finished jobs purged per second. docs/operations.md ("Retention") uses the figures to size the
purge against the pipeline (docs/benchmarks.md). Nothing else is started.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = os.environ.get("BENCH_DB", "conveyor_purge")
if not re.fullmatch(r"[a-z_][a-z0-9_]*", DB_NAME):
    raise SystemExit(f"BENCH_DB must be a plain lower-case identifier, not {DB_NAME!r}")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")

FILL = """
WITH c AS (SELECT id FROM clients_apiclient LIMIT 1),
j AS (
  INSERT INTO jobs_job (id, client_id, type, status, input, result, priority, queue, attempts,
    max_attempts, timeout_seconds, webhook_url, webhook_events, metadata, created_at,
    started_at, finished_at, cancel_requested, version, request_id, task_id, worker)
  SELECT gen_random_uuid(), c.id, 'diagnostics.echo', 'succeeded', '{"message": "bench"}',
    '{"message": "bench"}', 1, 'default', 1, 3, 60, 'https://example.com/hook',
    '["job.succeeded"]', '{}', %(old)s - make_interval(secs => g), %(old)s, %(old)s, false, 3,
    'req', 'task', 'worker'
  FROM generate_series(1, %(n)s) g, c
  RETURNING id, client_id
),
e AS (
  INSERT INTO jobs_jobevent (job_id, from_status, to_status, attempt, at, details)
  SELECT j.id, 'queued', 'running', 1, %(old)s, '{}' FROM j, generate_series(1, %(events)s)
),
d AS (
  INSERT INTO webhooks_webhookdelivery (job_id, client_id, event_type, sequence, webhook_id,
    url, job_snapshot, request_id, status, attempts, next_attempt_at, created_at, last_error)
  SELECT j.id, j.client_id, 'job.succeeded', 3, 'msg_' || replace(j.id::text, '-', ''),
    'https://example.com/hook', '{"status": "succeeded"}', 'req', 'delivered', 1, %(old)s,
    %(old)s, '' FROM j
  RETURNING id
)
INSERT INTO webhooks_webhookattempt (delivery_id, at, status_code, latency_ms, outcome, error,
  response_excerpt)
SELECT d.id, %(old)s, 200, 12.5, 'delivered', '', 'ok' FROM d
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000, help="finished jobs per size")
    parser.add_argument("--events", type=int, default=3, help="events per job")
    parser.add_argument("--batch-sizes", default="500,1000,2000,5000")
    args = parser.parse_args()

    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    os.environ.update(
        DATABASE_URL=f"{PG}/{DB_NAME}",
        DJANGO_SETTINGS_MODULE="config.settings",
        CONVEYOR_ENV=os.environ.get("CONVEYOR_ENV", "development"),
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("DATABASE_REPLICA_URLS", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apps.clients.services import client_create
    from apps.jobs.maintenance import jobs_purge_finished

    call_command("migrate", "--noinput", verbosity=0)
    client_create(name="purge-bench")
    old = timezone.now() - timedelta(days=400)
    print(f"{'batch':>6} {'jobs':>8} {'rows':>8} {'seconds':>8} {'jobs/s':>8}")
    for size in (int(s) for s in args.batch_sizes.split(",")):
        with connection.cursor() as cursor:
            cursor.execute(FILL, {"n": args.jobs, "events": args.events, "old": old})
            cursor.execute("VACUUM ANALYZE")
            cursor.execute(
                "SELECT (SELECT count(*) FROM jobs_job) + (SELECT count(*) FROM jobs_jobevent)"
                " + (SELECT count(*) FROM webhooks_webhookdelivery)"
                " + (SELECT count(*) FROM webhooks_webhookattempt)"
            )
            rows = cursor.fetchone()[0]
        started = time.perf_counter()
        purged = jobs_purge_finished(
            older_than=timedelta(days=30), batch_size=size, max_seconds=3600
        )
        seconds = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT count(*) FROM jobs_job) + (SELECT count(*) FROM jobs_jobevent)"
                " + (SELECT count(*) FROM webhooks_webhookdelivery)"
                " + (SELECT count(*) FROM webhooks_webhookattempt)"
            )
            left = cursor.fetchone()[0]
        assert purged == args.jobs, (purged, args.jobs)
        assert left == 0, left
        print(f"{size:>6} {purged:>8} {rows:>8} {seconds:>8.2f} {purged / seconds:>8.0f}")
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
