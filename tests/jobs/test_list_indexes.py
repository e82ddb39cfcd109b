"""EXPLAIN-checked: every filter of the job list is served by an index on PostgreSQL.

The table gets 40 000 rows and fresh statistics (ANALYZE), then each filter's page query (the
exact SQL of apps/jobs/selectors.py) is planned. ``SET LOCAL enable_seqscan = off`` makes the
assertion deterministic on a table this small, where a sequential scan can be as cheap as any
index: it forbids only the sequential scan, so the planner still chooses *which* index, and the
test asserts it chose the one meant for the filter. (At 40 000 rows the planner picks the same
indexes without the SET; it is there so that a statistics quirk cannot flip the test.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.jobs import selectors
from apps.jobs.models import Job
from apps.jobs.selectors import JobListFilters
from tests.factories import ApiClientFactory

pytestmark = pytest.mark.django_db

ROWS = 30_000


@pytest.fixture
def big_table() -> Iterator[tuple[int, int]]:
    mine, other = ApiClientFactory(), ApiClientFactory()
    with connection.cursor() as cursor:
        for client, rows in ((mine, ROWS), (other, ROWS // 3)):
            cursor.execute(
                """
                INSERT INTO jobs_job (id, client_id, type, status, input, priority, queue,
                    attempts, max_attempts, timeout_seconds, webhook_events, metadata,
                    created_at, cancel_requested, version, request_id, task_id, worker)
                SELECT gen_random_uuid(), %s,
                       CASE WHEN i %% 100 = 0 THEN 'reports.rare' ELSE 'diagnostics.echo' END,
                       (ARRAY['queued', 'running', 'succeeded', 'failed'])[1 + i %% 4],
                       '{}', 1,
                       CASE WHEN i %% 50 = 0 THEN 'heavy' ELSE 'default' END,
                       0, 3, 300, '[]',
                       jsonb_build_object('order', i::text, 'team', (i %% 7)::text),
                       now() - i * interval '1 second', false, 1, '', '', ''
                FROM generate_series(1, %s) AS i
                """,
                [client.pk, rows],
            )
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("SET LOCAL enable_seqscan = off")
    yield mine.pk, other.pk
    # ANALYZE writes pg_class in place, so the rollback would leave 40 000 rows in the table's
    # statistics for the tests that run next in this database (the admin's estimated count
    # reads them). Deleted by this transaction, the rows count as dead for a new ANALYZE.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobs_job WHERE client_id IN (%s, %s)", [mine.pk, other.pk])
        cursor.execute("ANALYZE jobs_job")


def _plan(client_id: int, filters: JobListFilters) -> dict[str, Any]:
    queryset = selectors.jobs_filtered(client_id=client_id, filters=filters).order_by("-pk")[:51]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def _indexes(plan: dict[str, Any]) -> set[str]:
    return {node["Index Name"] for node in _nodes(plan) if "Index Name" in node}


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (JobListFilters(), "job_client_id"),
        (JobListFilters(statuses=["failed"]), "job_client_status_id"),
        (JobListFilters(types=["reports.rare"]), "job_client_type_id"),
        (JobListFilters(metadata={"order": "12345"}), "job_metadata_gin"),
        (JobListFilters(metadata={"order": "42", "team": "0"}), "job_metadata_gin"),
        # A handful of queues per deployment: the client's newest-first index, filtered.
        (JobListFilters(queues=["heavy"]), "job_client_id"),
    ],
    ids=["none", "status", "type", "metadata", "metadata-two-keys", "queue"],
)
def test_each_list_filter_uses_its_index(
    big_table: tuple[int, int], filters: JobListFilters, index: str
) -> None:
    plan = _plan(big_table[0], filters)
    assert index in _indexes(plan), json.dumps(plan, indent=1)
    assert not any(node["Node Type"] == "Seq Scan" for node in _nodes(plan))


def test_created_bounds_become_an_id_range_on_the_client_index(
    big_table: tuple[int, int],
) -> None:
    # gen_random_uuid() ids above are not time-ordered, so only the plan is checked here; the
    # bound's exactness is tested through the API in test_api.py.
    after = timezone.now() - timedelta(minutes=5)
    plan = _plan(big_table[0], JobListFilters(created_after=after))
    assert "job_client_id" in _indexes(plan)
    conditions = " ".join(
        str(node.get("Index Cond", "")) + str(node.get("Recheck Cond", "")) for node in _nodes(plan)
    )
    assert "id >=" in conditions


def test_the_metadata_filter_finds_the_rows_it_should(big_table: tuple[int, int]) -> None:
    page, _ = selectors.jobs_page_for_client(
        client_id=big_table[0],
        filters=JobListFilters(metadata={"order": "12345"}),
        after=None,
        limit=50,
    )
    assert [job.metadata["order"] for job in page] == ["12345"]
    assert not Job.objects.filter(client_id=big_table[1], metadata__order="123456").exists()
