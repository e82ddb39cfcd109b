"""The operator console on a big table: ``python bench/admin_console.py [--rows 10000000]``.

Fills the bench database (``BENCH_DB``, as bench/run.py) with generated jobs (INSERT … SELECT
generate_series, time-ordered UUIDv7 ids over 30 days, 50 clients, 5 types, 5 % failed with one
of 5 error codes, a metadata entry each) unless it already holds that many, then:

- ``admin_list``: renders the job list of the admin (Django's test client, in this process, as a
  superuser: the view, its queries and its template) for each filter of the search syntax,
  ``--repeat`` times each, and reports p50/p99 in ms and the plan of each list query;
- ``bulk_retry``: with ``--bulk N``, marks N more jobs failed (error code ``bench_bulk``),
  confirms a bulk retry of them as the console does and runs the maintenance step
  (apps/jobs/bulk.py) until done, while another thread renders the job list every 0.2 s: the
  jobs per second of the retry and the list's latency meanwhile (blocked or not).

Prints one JSON object (bench/run.py's ``admin_list`` phase runs this and keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("BENCH_DB", "conveyor_bench").rsplit("/", 1)[-1]
if not re.fullmatch(r"[a-z_][a-z0-9_]*", DB_NAME):
    raise SystemExit(f"BENCH_DB must be a plain lower-case identifier, not {DB_NAME!r}")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
CLIENTS = 50
TYPES = ["diagnostics.echo", "reports.render", "mail.send", "images.resize", "billing.charge"]
CODES = ["handler_error", "timeout", "upstream_502", "invalid_input", "worker_lost"]

FILL = """
INSERT INTO jobs_job (id, client_id, type, status, input, result, error, priority, queue,
    attempts, max_attempts, timeout_seconds, idempotency_key, webhook_events, metadata,
    created_at, finished_at, cancel_requested, version, request_id, task_id, worker, held,
    client_slot, key_slot)
SELECT (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
       c.id,
       (%(types)s::text[])[1 + i %% 5],
       st,
       jsonb_build_object('message', 'order ' || i, 'n', i),
       CASE WHEN st = 'succeeded' THEN '{"ok": true}'::jsonb END,
       CASE WHEN st = 'failed'
            THEN jsonb_build_object('code', (%(codes)s::text[])[1 + (i / 20) %% 5],
                                    'message', 'boom') END,
       1, 'default', CASE WHEN st = 'failed' THEN 3 ELSE 1 END, 3, 300,
       CASE WHEN i %% 100 = 0 THEN 'key-' || i END,
       '[]', jsonb_build_object('order', (i %% 100000)::text),
       to_timestamp(ms / 1000.0),
       CASE WHEN st IN ('succeeded', 'failed', 'canceled')
            THEN to_timestamp(ms / 1000.0) + interval '2 seconds' END,
       false, 1, '', '', '', false, false, false
FROM (
    SELECT i, md5(i::text) AS h,
           (%(start_ms)s::bigint + i::bigint * %(step_ms)s) AS ms,
           CASE WHEN i %% 20 = 7 THEN 'failed'
                WHEN i %% 50 = 3 THEN 'canceled'
                WHEN i %% 1000 = 1 THEN 'queued'
                ELSE 'succeeded' END AS st
    FROM generate_series(%(first)s, %(last)s) AS i
) AS g
JOIN clients_apiclient c ON c.name = 'bench-' || (g.i %% %(clients)s)
"""


def setup_django() -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CONVEYOR_ENV": "development",
            "DATABASE_URL": f"{PG}/{DB_NAME}",
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "testserver,127.0.0.1",
        }
    )
    os.environ.pop("DATABASE_REPLICA_URLS", None)
    import django

    django.setup()


def fill(rows: int) -> float:
    """Make the table hold ``rows`` generated jobs (once); seconds spent."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", "--noinput", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'jobs_job'::regclass")
        estimate = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM clients_apiclient WHERE name LIKE 'bench-%%'")
        if estimate and abs(estimate - rows) < rows * 0.05 and cursor.fetchone()[0] == CLIENTS:
            return 0.0
    started = time.monotonic()
    with connection.cursor() as cursor:
        # Filling takes minutes a statement; the lists are then measured under the usual timeout.
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("TRUNCATE jobs_job CASCADE")
        # Filling with the secondary indexes in place costs an hour on two cores; built
        # afterwards (one sort each) they cost minutes. Their definitions come from the catalog.
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs_job' "
            "AND indexname <> 'jobs_job_pkey'"
        )
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("DELETE FROM clients_apiclient WHERE name LIKE 'bench-%%'")
        cursor.execute(
            "INSERT INTO clients_apiclient (name, is_active, unlimited, webhook_secret, "
            "previous_webhook_secret, created_at, weight) SELECT 'bench-' || i, true, true, "
            "'s', '', now(), 1 FROM generate_series(0, %s) AS i",
            [CLIENTS - 1],
        )
        start_ms = int((time.time() - 30 * 86400) * 1000)
        step_ms = max(1, 30 * 86400 * 1000 // rows)
        chunk = 500_000
        for first in range(0, rows, chunk):
            last = min(rows, first + chunk) - 1
            cursor.execute(
                FILL,
                {
                    "types": TYPES,
                    "codes": CODES,
                    "start_ms": start_ms,
                    "step_ms": step_ms,
                    "first": first,
                    "last": last,
                    "clients": CLIENTS,
                },
            )
            print(f"filled {last + 1:,} rows", file=sys.stderr, flush=True)
        for name, definition in indexes:
            cursor.execute(definition)
            print(f"index {name} built", file=sys.stderr, flush=True)
        cursor.execute("VACUUM ANALYZE jobs_job")
        cursor.execute("RESET statement_timeout")
    return time.monotonic() - started


def cases() -> dict[str, dict[str, str]]:
    from django.utils import timezone

    day = (timezone.now() - __import__("datetime").timedelta(days=10)).date().isoformat()
    return {
        "no filter": {},
        "status=failed (dead letters)": {"status__exact": "failed"},
        "status=queued": {"status__exact": "queued"},
        "client": {"q": "client:bench-7"},
        "client + status": {"q": "client:bench-7", "status__exact": "failed"},
        "type": {"type": "billing.charge"},
        "error code": {"q": "error:timeout"},
        "failed + error code": {"status__exact": "failed", "q": "error:timeout"},
        "metadata key=value": {"q": "order=4242"},
        "created range (a day)": {"q": f"created>{day} created<{day}T23:59:59"},
        "finished in the last hour": {"q": "finished>-1h"},
        "input text + client + a day": {
            "q": f'client:bench-7 created>{day} created<{day}T23:59:59 input:"order 12"'
        },
        "idempotency key": {"q": "key-4200"},
    }


def plans(queryset: Any) -> str:
    from django.db import connection

    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _changelist(user: Any, params: dict[str, str]) -> Any:
    """The admin's ChangeList for these parameters: its page of rows and its queryset."""
    from django.contrib import admin
    from django.test import RequestFactory

    from apps.jobs.models import Job

    request = RequestFactory().get("/admin/jobs/job/", params)
    request.user = user
    return admin.site._registry[Job].get_changelist_instance(request)


def measure_list(repeat: int) -> dict[str, Any]:
    """Each case ``repeat`` times (after a warm-up): the whole view (``p50_ms``/``p99_ms``:
    session, queries, template) and its SQL alone (``sql_p50_ms``: the part that grows with the
    table; the rest is rendering 50 rows, which does not)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user, _ = get_user_model().objects.get_or_create(
        username="bench-root", defaults={"is_staff": True, "is_superuser": True}
    )
    browser = Client()
    browser.force_login(user)
    results: dict[str, Any] = {}
    for label, params in cases().items():
        times, sql_times = [], []
        for round_ in range(repeat + 1):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = browser.get("/admin/jobs/job/", params)
                elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (label, response.status_code)
            if round_:  # the first is a warm-up
                times.append(elapsed)
                sql_times.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
        changelist = _changelist(user, params)
        times.sort()
        sql_times.sort()
        results[label] = {
            "params": params,
            "rows_on_page": len(changelist.result_list),
            "p50_ms": round(statistics.median(times), 1),
            "p99_ms": round(times[int((len(times) - 1) * 0.99)], 1),
            "sql_p50_ms": round(statistics.median(sql_times), 1),
            "sql_p99_ms": round(sql_times[int((len(sql_times) - 1) * 0.99)], 1),
            "plan": plans(changelist.queryset[:50]),
        }
        print(
            f"{label}: p50 {results[label]['p50_ms']} ms, sql {results[label]['sql_p50_ms']} ms",
            file=sys.stderr,
            flush=True,
        )
    return results


def measure_bulk(count: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from apps.jobs.bulk import bulk_action_create, bulk_actions_run
    from apps.jobs.models import JobBulkAction

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        # The newest succeeded jobs become failed ones with their own error code.
        cursor.execute(
            "UPDATE jobs_job SET status = 'failed', error = '{\"code\": \"bench_bulk\"}' "
            "WHERE id IN (SELECT id FROM jobs_job WHERE status = 'succeeded' "
            "ORDER BY id DESC LIMIT %s)",
            [count],
        )
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("RESET statement_timeout")
    user = get_user_model().objects.get(username="bench-root")
    query = "status__exact=failed&q=error%3Abench_bulk"
    started = time.monotonic()
    bulk = bulk_action_create(user=user, action="retry", query=query)
    confirm_s = time.monotonic() - started
    latencies: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        browser = Client()
        browser.force_login(user)
        while not stop.is_set():
            t0 = time.perf_counter()
            assert browser.get("/admin/jobs/job/", {"status__exact": "failed"}).status_code == 200
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.2)
        connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    while JobBulkAction.objects.get(pk=bulk.pk).status != "done":
        bulk_actions_run(budget_seconds=2.0)
    seconds = time.monotonic() - started
    stop.set()
    watcher.join()
    bulk.refresh_from_db()
    latencies.sort()
    return {
        "jobs": count,
        "expected": bulk.expected,
        "done": bulk.done,
        "skipped": bulk.skipped,
        "confirm_s": round(confirm_s, 2),
        "seconds": round(seconds, 1),
        "jobs_per_s": round(bulk.done / seconds),
        "list_during_p50_ms": round(statistics.median(latencies), 1),
        "list_during_p99_ms": round(latencies[int((len(latencies) - 1) * 0.99)], 1),
        "list_during_max_ms": round(latencies[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--bulk", type=int, default=0, help="jobs to bulk-retry (0: skip)")
    parser.add_argument("--no-plans", action="store_true")
    args = parser.parse_args()
    setup_django()
    out: dict[str, Any] = {"rows": args.rows, "fill_seconds": round(fill(args.rows))}
    out["admin_list"] = measure_list(args.repeat)
    if args.no_plans:
        for value in out["admin_list"].values():
            value.pop("plan")
    if args.bulk:
        out["bulk_retry"] = measure_bulk(args.bulk)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
