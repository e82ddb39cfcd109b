"""A deactivated client's jobs wait (held), are never claimed, and resume on reactivation; held
jobs cost other clients' claims nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from apps.clients.models import ApiClient
from apps.clients.services import client_set_active
from apps.jobs import holds, services
from apps.jobs.models import Job, JobPriority, JobStatus
from apps.jobs.store import NEXT_QUEUED
from tests.factories import ApiClientFactory, JobFactory

pytestmark = pytest.mark.django_db


def test_an_inactive_clients_jobs_are_held_and_resume_when_it_is_active_again(
    wakeups: Any,
) -> None:
    gone, other = ApiClientFactory(), ApiClientFactory()
    # The inactive client's jobs are older and more urgent: first in line but for the hold.
    waiting = JobFactory(client=gone, priority=JobPriority.HIGH)
    later = JobFactory(client=gone, status=JobStatus.SCHEDULED)
    running = services.job_start(job_id=JobFactory(client=gone).pk)
    assert running is not None
    mine = JobFactory(client=other)

    client_set_active(client=gone, active=False)
    assert set(Job.objects.filter(held=True).values_list("pk", flat=True)) == {
        waiting.pk,
        later.pk,
        running.pk,
    }
    claimed = services.job_claim_next(queue="default")
    assert claimed is not None
    assert claimed.pk == mine.pk
    assert services.job_claim_next(queue="default") is None
    assert services.job_start(job_id=waiting.pk) is None
    # A job running at the deactivation runs to its end.
    assert services.job_succeed(job=running, result={"ok": True}) is not None
    wakeups.received()

    client_set_active(client=gone, active=True)
    assert not Job.objects.filter(held=True).exists()
    assert wakeups.received() == {"default": 1}
    claimed = services.job_claim_next(queue="default")
    assert claimed is not None
    assert claimed.pk == waiting.pk
    assert Job.objects.get(pk=later.pk).status == JobStatus.SCHEDULED


def test_a_job_queued_before_its_hold_is_not_claimed_and_the_loop_holds_it() -> None:
    """A deactivation that bypassed the model's save (no signal) or a job inserted in the
    moment before the hold: the claim re-checks the client, the maintenance loop holds it."""
    client = ApiClientFactory()
    job = JobFactory(client=client)
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)
    assert not Job.objects.get(pk=job.pk).held
    assert services.job_claim_next(queue="default") is None
    assert holds.jobs_sync_holds() == 1
    assert Job.objects.get(pk=job.pk).held
    ApiClient.objects.filter(pk=client.pk).update(is_active=True)
    assert holds.jobs_sync_holds() == 1
    claimed = services.job_claim_next(queue="default")
    assert claimed is not None
    assert claimed.pk == job.pk


def test_held_jobs_do_not_slow_other_clients_claims() -> None:
    """20 000 held jobs ahead in the queue: the claim reads only its own indexes, one entry a
    step, and probes one client."""
    gone, other = ApiClientFactory(is_active=False), ApiClientFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_job (id, client_id, type, status, input, priority, queue, attempts,
                max_attempts, timeout_seconds, webhook_events, metadata, created_at,
                cancel_requested, version, request_id, task_id, worker, held)
            SELECT gen_random_uuid(), %s, 'diagnostics.echo', 'queued', '{}', 2, 'default', 0,
                3, 300, '[]', '{}', now() - i * interval '1 second', false, 1, '', '', '', true
            FROM generate_series(1, 20000) AS i
            """,
            [gone.pk],
        )
        cursor.execute("ANALYZE jobs_job")
    mine = JobFactory(client=other, priority=JobPriority.LOW)
    select = NEXT_QUEUED.format(
        table='"jobs_job"',
        clients='"clients_apiclient"',
        counts='"jobs_runningcount"',
        windows='"jobs_ratewindow"',
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {select}", {"queue": "default", "rates": "{}"}
        )
        raw = cursor.fetchone()[0]
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    nodes = _nodes(plan)
    scans = [node for node in nodes if node.get("Relation Name") == "jobs_job"]
    assert {node.get("Index Name") for node in scans} <= {
        "job_claimable_by_client",
        "job_running",
    }, plan
    assert all(node["Actual Rows"] <= 1 for node in scans), plan
    assert all(node.get("Rows Removed by Filter", 0) == 0 for node in scans), plan
    claimed = services.job_claim_next(queue="default")
    assert claimed is not None
    assert claimed.pk == mine.pk


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def test_a_held_retrying_job_is_promoted_when_due_but_not_claimed() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.jobs import maintenance

    client = ApiClientFactory()
    retrying = JobFactory(
        client=client, status=JobStatus.RETRYING, attempts=1, run_at=timezone.now()
    )
    client_set_active(client=client, active=False)
    assert maintenance.jobs_promote_due(now=timezone.now() + timedelta(seconds=1)) == 1
    job = Job.objects.get(pk=retrying.pk)
    assert (job.status, job.held) == (JobStatus.QUEUED, True)
    assert services.job_claim_next(queue="default") is None
    client_set_active(client=client, active=True)
    claimed = services.job_claim_next(queue="default")
    assert claimed is not None
    assert claimed.pk == retrying.pk
