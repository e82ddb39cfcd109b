"""End to end with a real Celery worker process: HTTP submission → row → broker → worker →
result → polled status."""

from __future__ import annotations

from typing import Any

import pytest

from apps.jobs.models import Job, JobEvent, JobStatus
from tests.support.processes import wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]

TERMINAL = {"succeeded", "failed", "canceled"}


def poll_until(tenant: Tenant, job_id: str, statuses: set[str], timeout: float = 20) -> dict:
    def reached() -> dict | None:
        job = tenant.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return wait_for(reached, timeout=timeout)


def test_echo_job_runs_to_success(live_worker: Any, tenant: Tenant) -> None:
    submitted = tenant.submit(input={"message": "end to end"})
    assert submitted.status_code == 202
    job = poll_until(tenant, submitted.json()["id"], TERMINAL)
    assert job["status"] == "succeeded"
    assert job["result"] == {"message": "end to end", "attempt": 1}
    assert job["attempts"] == 1
    assert job["started_at"]
    assert job["finished_at"]
    row = Job.objects.get(pk=job["id"])
    assert row.worker.startswith("worker-")
    assert row.task_id


def test_fail_permanently_fails_with_the_error(live_worker: Any, tenant: Tenant) -> None:
    job_id = tenant.submit(input={"message": "x", "fail_permanently": True}).json()["id"]
    job = poll_until(tenant, job_id, TERMINAL)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "echo_failed_permanently"
    assert job["attempts"] == 1
    assert job["result"] is None


def test_cancel_of_a_running_job_stops_it(live_worker: Any, tenant: Tenant) -> None:
    job_id = tenant.submit(input={"message": "long", "sleep_seconds": 60}).json()["id"]
    poll_until(tenant, job_id, {"running"})
    response = tenant.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    job = poll_until(tenant, job_id, TERMINAL, timeout=10)
    assert job["status"] == "canceled"


def test_cancel_while_queued_means_it_never_runs(live_worker: Any, tenant: Tenant) -> None:
    # Occupy both worker processes so the next job stays queued.
    blockers = [
        tenant.submit(input={"message": "busy", "sleep_seconds": 60}).json()["id"] for _ in range(2)
    ]
    for blocker in blockers:
        poll_until(tenant, blocker, {"running"})
    job_id = tenant.submit().json()["id"]
    response = tenant.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    for blocker in blockers:
        tenant.post(f"/api/v1/jobs/{blocker}/cancel")
    for blocker in blockers:
        poll_until(tenant, blocker, TERMINAL)
    # The workers are free again, drained the queue and never touched the canceled job.
    job_id_2 = tenant.submit().json()["id"]
    poll_until(tenant, job_id_2, TERMINAL)
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.started_at) == (JobStatus.CANCELED, 0, None)


def test_retry_runs_a_failed_job_again(live_worker: Any, tenant: Tenant) -> None:
    job_id = tenant.submit(input={"message": "x", "fail_permanently": True}).json()["id"]
    poll_until(tenant, job_id, TERMINAL)
    assert tenant.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
    wait_for(
        lambda: JobEvent.objects.filter(job_id=job_id, to_status="failed").count() == 2,
        timeout=20,
    )
    assert Job.objects.get(pk=job_id).attempts == 1


def test_cancel_racing_the_worker_never_both_cancels_and_runs(
    live_worker: Any, tenant: Tenant
) -> None:
    for _ in range(25):
        job_id = tenant.submit().json()["id"]
        cancel = tenant.post(f"/api/v1/jobs/{job_id}/cancel")
        job = poll_until(tenant, job_id, TERMINAL)
        statuses = list(
            JobEvent.objects.filter(job_id=job_id)
            .order_by("id")
            .values_list("to_status", flat=True)
        )
        if cancel.status_code == 200:  # canceled while queued: it never ran
            assert statuses == ["queued", "canceled"], statuses
            assert job["attempts"] == 0
        else:  # the worker won: the job ran and finished on its own terms
            assert cancel.status_code in {202, 409}
            assert "running" in statuses
            assert statuses.count("canceled") <= 1


def test_job_types_run_on_their_own_pool(
    transactional_db: None, tenant: Tenant, tmp_path: Any
) -> None:
    from tests.support.processes import start_worker

    default_pool = start_worker(tmp_path, name="default-pool", queues="default")
    try:
        job_id = tenant.submit(type="diagnostics.checksum", input={"size_mib": 2}).json()["id"]
        assert tenant.get(f"/api/v1/jobs/{job_id}").json()["queue"] == "heavy"
        echo_id = tenant.submit().json()["id"]
        poll_until(tenant, echo_id, TERMINAL)
        # The default pool ran the echo and left the heavy job alone.
        assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
        heavy_pool = start_worker(tmp_path, name="heavy-pool", queues="heavy", relay=False)
        try:
            job = poll_until(tenant, job_id, TERMINAL)
        finally:
            heavy_pool.stop()
    finally:
        default_pool.stop()
    assert job["status"] == "succeeded"
    assert job["result"]["mib"] == 2
    assert Job.objects.get(pk=job_id).worker.startswith("heavy-pool")
