"""Workflows end to end with a real Celery worker: the text word-count family fanned out and
merged (fan-in reading ctx.dependency_results), released by the worker's own transactions and
woken without a poll; a failure cancels the rest of the graph."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from apps.jobs.models import Job, JobStatus
from tests.support.processes import wait_for
from tests.support.tenants import Tenant

pytestmark = [pytest.mark.e2e]

TERMINAL = {"succeeded", "failed", "canceled"}
TEXT = "the quick brown fox jumps over the lazy dog the end " * 6


def wait_terminal(tenant: Tenant, job_id: str, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = Job.objects.get(pk=job_id)
        return {"status": job.status} if job.status in TERMINAL else None

    wait_for(done, timeout=timeout)
    body: dict[str, Any] = tenant.get(f"/api/v1/jobs/{job_id}").json()
    return body


def word_count_batch(chunks: int) -> list[dict[str, Any]]:
    return [
        {"type": "text.split", "ref": "split", "input": {"text": TEXT, "chunks": chunks}},
        *(
            {
                "type": "text.count_words",
                "ref": f"count-{i}",
                "depends_on": ["split"],
                "input": {"chunk": i},
            }
            for i in range(chunks)
        ),
        {
            "type": "text.merge_counts",
            "depends_on": [f"count-{i}" for i in range(chunks)],
            "input": {"top": 3},
        },
    ]


def test_the_word_count_family_fans_out_and_in(live_worker: Any, tenant: Tenant) -> None:
    response = tenant.post("/api/v1/jobs/batch", {"jobs": word_count_batch(8)})
    assert response.status_code == 202, response.content
    jobs = response.json()["jobs"]
    merge = wait_terminal(tenant, jobs[-1]["id"])
    assert merge["status"] == "succeeded", merge
    assert merge["result"]["chunks"] == 8
    assert merge["result"]["words"] == len(TEXT.split())
    assert merge["result"]["top"] == [["the", 18], ["brown", 6], ["dog", 6]]
    rows = {str(j.pk): j for j in Job.objects.filter(pk__in=[j["id"] for j in jobs])}
    counts = [rows[j["id"]] for j in jobs[1:-1]]
    # Nothing started before what it depends on had finished.
    split = rows[jobs[0]["id"]]
    assert split.finished_at is not None
    assert all(c.started_at and c.started_at >= split.finished_at for c in counts)
    last_count = max(c.finished_at for c in counts if c.finished_at)
    started: datetime = rows[jobs[-1]["id"]].started_at  # type: ignore[assignment]
    assert started >= last_count


def test_a_failed_split_cancels_the_whole_graph(live_worker: Any, tenant: Tenant) -> None:
    entries = word_count_batch(3)
    entries[0]["input"]["chunks"] = 1  # the counts of chunks 1 and 2 fail: no such chunk
    jobs = tenant.post("/api/v1/jobs/batch", {"jobs": entries}).json()["jobs"]
    merge = wait_terminal(tenant, jobs[-1]["id"])
    assert merge["status"] == "canceled"
    assert merge["error"]["code"] == "dependency_failed"
    statuses = [wait_terminal(tenant, j["id"])["status"] for j in jobs[1:-1]]
    assert statuses == ["succeeded", "failed", "failed"]
    assert Job.objects.get(pk=jobs[-1]["id"]).started_at is None
    assert Job.objects.get(pk=jobs[-1]["id"]).status == JobStatus.CANCELED
