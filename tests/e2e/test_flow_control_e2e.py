"""Flow control with real worker processes: concurrency keys hold exactly across processes, and
a backlog does not delay another client's job (API.md, "Sharing the pools fairly")."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest

from apps.jobs.models import Job, JobStatus, RunningCount
from tests.support.processes import start_worker, wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]

LIMITS = {"k1": 1, "k2": 2, "k3": 3}


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end before a start at the same instant)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_concurrency_limits_hold_across_worker_processes(
    transactional_db: None, tenant: Tenant, tmp_path: Any
) -> None:
    pools = [start_worker(tmp_path, name=f"pool{i}", concurrency=4, relay=i == 0) for i in range(2)]
    try:
        jobs = [
            {
                "type": "diagnostics.echo",
                "input": {"message": str(i), "sleep_seconds": 0.02},
                "concurrency_key": key,
                "concurrency_limit": limit,
            }
            for i in range(60)
            for key, limit in LIMITS.items()
        ]
        response = tenant.post("/api/v1/jobs/batch", {"jobs": jobs})
        assert response.status_code == 202, response.content
        done = wait_for(
            lambda: not Job.objects.exclude(status=JobStatus.SUCCEEDED).exists(), timeout=120
        )
        assert done
    finally:
        for pool in pools:
            pool.stop()
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for key, started, finished in Job.objects.values_list(
        "concurrency_key", "started_at", "finished_at"
    ):
        spans[key].append((started, finished))
    assert {key: len(s) for key, s in spans.items()} == dict.fromkeys(LIMITS, 60)
    peaks = {key: most_at_once(s) for key, s in spans.items()}
    for key, limit in LIMITS.items():
        assert 1 <= peaks[key] <= limit, peaks
    # Every slot was given back.
    assert set(RunningCount.objects.values_list("running", flat=True)) == {0}


def test_a_backlog_does_not_hold_back_another_clients_job(
    transactional_db: None, tenant: Tenant, other_tenant: Tenant, tmp_path: Any
) -> None:
    pool = start_worker(tmp_path, name="shared", concurrency=2)
    try:
        backlog = [
            {"type": "diagnostics.echo", "input": {"message": "a", "sleep_seconds": 0.1}}
        ] * 40
        assert tenant.post("/api/v1/jobs/batch", {"jobs": backlog}).status_code == 202
        wait_for(lambda: Job.objects.filter(status=JobStatus.RUNNING).exists(), timeout=20)
        mine = other_tenant.submit(input={"message": "b"}).json()["id"]
        wait_for(lambda: Job.objects.get(pk=mine).status == JobStatus.SUCCEEDED, timeout=60)
    finally:
        pool.stop()
    started = Job.objects.get(pk=mine).started_at
    # The other client's job started after a few of the backlog's jobs (those claimed in one
    # group before it arrived, and the slots of a busy machine), not after the whole backlog.
    before = Job.objects.filter(client=tenant.client, started_at__lt=started).count()
    assert before <= 10, before


def test_a_rate_limited_type_runs_at_its_rate_woken_without_a_scheduler(
    live_worker: Any, tenant: Tenant
) -> None:
    """No scheduler runs here (no maintenance loop to wake the pool): the jobs that wait on the
    rate window are started by the delayed wake-up published when it was found full."""
    jobs = [{"type": "testing.rated", "input": {}}] * 6
    assert tenant.post("/api/v1/jobs/batch", {"jobs": jobs}).status_code == 202
    wait_for(
        lambda: Job.objects.filter(type="testing.rated", status=JobStatus.SUCCEEDED).count() == 6,
        timeout=30,
    )
    starts = sorted(Job.objects.filter(type="testing.rated").values_list("started_at", flat=True))
    # Two starts per window of a second: any span shorter than a second meets at most two
    # windows, so holds at most four starts.
    for first, fifth in zip(starts, starts[4:], strict=False):
        assert (fifth - first).total_seconds() >= 0.95, starts
