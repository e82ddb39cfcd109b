"""With a real worker process: a deactivated client's queued work does not start, and runs once
the client is active again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.clients.services import client_set_active
from apps.jobs.dispatch import publish_wakeups
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory
from tests.support.processes import wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]


def test_a_deactivated_clients_jobs_wait_and_run_after_reactivation(
    live_worker: Any, tenant: Tenant, make_tenant: Any
) -> None:
    queued_before = JobFactory(client=tenant.client)  # not announced yet
    client_set_active(client=tenant.client, active=False)
    assert tenant.submit().status_code == 401
    # Queued after the deactivation (a submission authenticated just before it): not held yet.
    queued_after = JobFactory(client=tenant.client)
    assert Job.objects.get(pk=queued_before.pk).held
    assert not Job.objects.get(pk=queued_after.pk).held

    # Another client's job, announced with wake-ups for the whole queue, runs; ours do not.
    other = make_tenant()
    other_id = other.submit(input={"message": "other"}).json()["id"]
    publish_wakeups({"default": 2})
    wait_for(lambda: Job.objects.get(pk=other_id).status == JobStatus.SUCCEEDED, timeout=20)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert set(
            Job.objects.filter(pk__in=[queued_before.pk, queued_after.pk]).values_list(
                "status", flat=True
            )
        ) == {JobStatus.QUEUED}
        time.sleep(0.2)

    client_set_active(client=tenant.client, active=True)
    assert tenant.get(f"/api/v1/jobs/{queued_before.pk}").status_code == 200
    wait_for(
        lambda: (
            set(
                Job.objects.filter(pk__in=[queued_before.pk, queued_after.pk]).values_list(
                    "status", flat=True
                )
            )
            == {JobStatus.SUCCEEDED}
        ),
        timeout=20,
    )
