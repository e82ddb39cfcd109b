"""The admin's job list on a big table: no full COUNT, no DISTINCT scans, related rows joined."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.admin_tools import EstimatedCountPaginator
from tests.factories import ApiClientFactory, JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Any) -> Any:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def _fill(rows: int) -> None:
    owner = ApiClientFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_job (id, client_id, type, status, input, priority, queue, attempts,
                max_attempts, timeout_seconds, webhook_events, metadata, created_at,
                cancel_requested, version, request_id, task_id, worker)
            SELECT gen_random_uuid(), %s, 'diagnostics.echo',
                   CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'succeeded' END, '{}', 1,
                   'default', 1, 3, 300, '[]', '{}', now(), false, 1, '', '', ''
            FROM generate_series(1, %s) AS i
            """,
            [owner.pk, rows],
        )
        cursor.execute("ANALYZE jobs_job")


def _list(staff: Any, query: str = "") -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(f"/admin/jobs/job/{query}")
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


def test_the_list_joins_clients_and_asks_no_distinct_values(staff: Any) -> None:
    for _ in range(5):
        JobFactory()
    response, statements = _list(staff)
    job_queries = [sql for sql in statements if '"jobs_job"' in sql]
    assert not any("DISTINCT" in sql.upper() for sql in job_queries), job_queries
    # One query for the page (clients joined), one bounded count: nothing per row.
    assert len(job_queries) <= 2, job_queries
    assert response.context["cl"].result_count == 5


def test_a_big_table_is_never_counted_in_full(staff: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(3000)
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 500)

    response, statements = _list(staff)
    counts = [sql for sql in statements if "COUNT(" in sql.upper()]
    assert counts == [], counts  # the table's statistics answer
    assert abs(response.context["cl"].result_count - 3000) < 300

    response, statements = _list(staff, "?status__exact=failed")
    counts = [sql for sql in statements if "COUNT(" in sql.upper()]
    assert len(counts) == 1, counts
    assert "LIMIT 501" in counts[0]
    assert abs(response.context["cl"].result_count - 300) < 100  # the planner's estimate


def test_a_small_filtered_list_is_counted_exactly(staff: Any) -> None:
    for status in ["failed", "failed", "succeeded"]:
        JobFactory(status=status)
    response, _ = _list(staff, "?status__exact=failed")
    assert response.context["cl"].result_count == 2


def test_type_and_queue_filters_offer_the_registry(staff: Any) -> None:
    response, _ = _list(staff)
    content = response.content.decode()
    assert "?type=diagnostics.echo" in content
    assert "?queue=default" in content
    JobFactory(type="diagnostics.echo")
    filtered, _ = _list(staff, "?type=diagnostics.echo")
    assert filtered.context["cl"].result_count == 1


def test_a_count_past_its_time_budget_gives_way_to_the_estimate() -> None:
    from apps.core.admin_tools import _count_within
    from apps.jobs.models import Job

    JobFactory()
    slow = Job.objects.extra(where=["pg_sleep(0.2) IS NOT NULL"])
    assert _count_within(connection, slow, 10, budget_ms=20) is None
    # The connection is usable afterwards, with its own timeout back.
    assert _count_within(connection, Job.objects.all(), 10, budget_ms=20) == 1
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] != "20ms"
