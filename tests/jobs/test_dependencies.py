"""Workflows (API.md, "Workflows"): depends_on and batch refs, jobs waiting out of the claim's
way, release by the transaction that records the last success, transitive cancel in one
statement, and what retry, schedules and unique keys do with dependencies."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.jobs import services
from apps.jobs.models import Job, JobEvent, JobStatus
from apps.jobs.representation import job_to_dict
from apps.jobs.services import ClaimRequest, Outcome
from apps.webhooks.models import WebhookDelivery
from apps.webhooks.outbox import job_from_snapshot
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

ECHO = {"type": "diagnostics.echo", "input": {"message": "m"}}


def batch(tenant: Tenant, *entries: dict[str, Any]) -> Any:
    return tenant.post("/api/v1/jobs/batch", {"jobs": [{**ECHO, **e} for e in entries]})


def run(job_id: Any, *, result: dict[str, Any] | None = None) -> Job:
    started = services.job_start(job_id=job_id)
    assert started is not None, "the job was not claimable"
    done = services.job_succeed(job=started, result=result or {"ok": str(job_id)})
    assert done is not None
    return done


def fail(job_id: Any) -> Job:
    started = services.job_start(job_id=job_id)
    assert started is not None
    failed = services.job_fail(job=started, code="boom", message="boom", retryable=False)
    assert failed is not None
    assert failed.status == JobStatus.FAILED
    return failed


def get(tenant: Tenant, job_id: Any) -> dict[str, Any]:
    """The job as the API shows it, read past the status cache (the service calls of these
    tests run outside the requests whose commits would refresh it)."""
    cache.clear()
    body: dict[str, Any] = tenant.get(f"/api/v1/jobs/{job_id}").json()
    return body


# --- Validation -------------------------------------------------------------------------------


def test_unknown_and_foreign_ids_are_refused_naming_them(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    foreign = other_tenant.submit().json()["id"]
    unknown = str(uuid.uuid4())
    for bad in (foreign, unknown):
        error = assert_error(tenant.submit(depends_on=[bad]), 400, "validation_error")
        assert bad in error["details"]["depends_on"][0]
    error = assert_error(tenant.submit(depends_on=["not-an-id"]), 400, "validation_error")
    assert "not-an-id" in error["details"]["depends_on"][0]
    # Nothing was created, and the other client's job was not touched.
    assert not Job.objects.filter(client=tenant.client).exists()
    assert Job.objects.get(pk=foreign).has_dependents is False


@pytest.mark.parametrize(
    "value",
    [
        "x",
        [1],
        [""],
        ["a" * 101],
        [str(uuid.uuid4()) for _ in range(101)],
        None,
    ],
)
def test_malformed_depends_on_and_ref_are_refused(tenant: Tenant, value: Any) -> None:
    assert_error(tenant.submit(depends_on=value), 400, "validation_error")
    assert_error(batch(tenant, {"ref": value if value != "x" else ""}), 400, "validation_error")


def test_batch_refs_forward_unknown_cycles_and_duplicates(tenant: Tenant) -> None:
    forward = batch(tenant, {"ref": "a", "depends_on": ["b"]}, {"ref": "b"})
    error = assert_error(forward, 400, "validation_error")
    assert "'b'" in error["details"]["jobs.0.depends_on"][0]
    assert "later job" in error["details"]["jobs.0.depends_on"][0]

    cycle = batch(
        tenant,
        {"ref": "a", "depends_on": ["c"]},
        {"ref": "b", "depends_on": ["a"]},
        {"ref": "c", "depends_on": ["b"]},
    )
    error = assert_error(cycle, 400, "validation_error")
    assert "'c'" in error["details"]["jobs.0.depends_on"][0]
    assert "cycle" in error["details"]["jobs.0.depends_on"][0]

    selfish = batch(tenant, {"ref": "a", "depends_on": ["a"]})
    assert (
        "cycle" in assert_error(selfish, 400, "validation_error")["details"]["jobs.0.depends_on"][0]
    )

    unknown = batch(tenant, {"ref": "a"}, {"depends_on": ["nope"]})
    assert (
        "'nope'"
        in assert_error(unknown, 400, "validation_error")["details"]["jobs.1.depends_on"][0]
    )

    twice = batch(tenant, {"ref": "a"}, {"ref": "a"})
    assert "jobs.1.ref" in assert_error(twice, 400, "validation_error")["details"]

    foreign = batch(tenant, {"ref": "a"}, {"depends_on": ["a", str(uuid.uuid4())]})
    assert "jobs.1.depends_on" in assert_error(foreign, 400, "validation_error")["details"]
    assert not Job.objects.filter(client=tenant.client).exists()


def test_a_schedule_job_refuses_dependencies(tenant: Tenant) -> None:
    body = {"name": "n", "cron": "* * * * *", "job": {**ECHO, "depends_on": [str(uuid.uuid4())]}}
    error = assert_error(tenant.post("/api/v1/schedules", body), 400, "validation_error")
    assert "job.depends_on" in error["details"]


# --- Waiting and release ----------------------------------------------------------------------


def test_a_dependent_waits_out_of_the_claim_and_starts_on_the_last_success(
    tenant: Tenant,
) -> None:
    a = tenant.submit().json()["id"]
    b = tenant.submit().json()["id"]
    c = tenant.submit(depends_on=[a, b, a]).json()
    assert c["status"] == "queued"
    assert c["wait_reason"] == "dependencies"
    assert c["depends_on"] == [a, b]
    # The claim takes the dependencies, never the waiting job.
    assert services.job_start(job_id=c["id"]) is None
    claimed = {str(j.pk) for j in [services.job_claim_next(queue="default") for _ in range(3)] if j}
    assert claimed == {a, b}
    for job_id in (a, b):
        started = Job.objects.get(pk=job_id)
        services.job_succeed(job=started, result={"from": job_id})
        if job_id == a:
            assert get(tenant, c["id"])["wait_reason"] == "dependencies"
    released = get(tenant, c["id"])
    assert released["status"] == "queued"
    assert released["wait_reason"] == "capacity"
    assert Job.objects.get(pk=c["id"]).pending_dependencies == 0
    assert str(services.job_claim_next(queue="default").pk) == c["id"]  # type: ignore[union-attr]


def test_the_worker_round_trip_releases_and_claims_the_dependent(tenant: Tenant) -> None:
    root = tenant.submit().json()["id"]
    child = tenant.submit(depends_on=[root]).json()["id"]
    claimed = services.job_claim_next(queue="default")
    assert claimed is not None
    assert str(claimed.pk) == root
    recorded, next_jobs = services.jobs_record_and_claim(
        outcomes=[Outcome(job=claimed, status=JobStatus.SUCCEEDED, result={"r": 1})],
        claim=ClaimRequest(queue="default", size=1),
    )
    assert recorded[0] is not None
    assert recorded[0].status == JobStatus.SUCCEEDED
    # Released by the same transaction, before its claim: the same round trip starts it.
    assert [str(j.pk) for j in next_jobs] == [child]


def test_dependencies_finished_at_submission(tenant: Tenant) -> None:
    done = run(tenant.submit().json()["id"])
    ready = tenant.submit(depends_on=[str(done.pk)]).json()
    assert ready["wait_reason"] == "capacity"
    failed = fail(tenant.submit().json()["id"])
    doomed = tenant.submit(depends_on=[str(done.pk), str(failed.pk)])
    assert doomed.status_code == 202
    body = doomed.json()
    assert body["status"] == "canceled"
    assert body["error"]["code"] == "dependency_failed"
    assert get(tenant, body["id"])["status"] == "canceled"


def test_a_batch_fans_out_and_in(tenant: Tenant) -> None:
    response = batch(
        tenant,
        {"ref": "root"},
        *({"ref": f"leaf{i}", "depends_on": ["root"]} for i in range(5)),
        {"ref": "merge", "depends_on": [f"leaf{i}" for i in range(5)]},
    )
    assert response.status_code == 202
    jobs = response.json()["jobs"]
    root, leaves, merge = jobs[0], jobs[1:6], jobs[6]
    assert all(leaf["depends_on"] == [root["id"]] for leaf in leaves)
    assert merge["depends_on"] == [leaf["id"] for leaf in leaves]
    assert [j["wait_reason"] for j in jobs] == ["capacity"] + ["dependencies"] * 6
    listed = {j["id"]: j for j in tenant.get("/api/v1/jobs").json()["results"]}
    assert listed[merge["id"]]["depends_on"] == merge["depends_on"]
    assert listed[merge["id"]]["wait_reason"] == "dependencies"
    run(root["id"])
    for leaf in leaves:
        assert get(tenant, merge["id"])["wait_reason"] == "dependencies"
        run(leaf["id"])
    assert get(tenant, merge["id"])["wait_reason"] == "capacity"


# --- Cancel -----------------------------------------------------------------------------------


def test_a_failure_cancels_a_deep_chain_in_one_statement(tenant: Tenant) -> None:
    depth = 60
    entries = [{"ref": "0"}] + [
        {"ref": str(i), "depends_on": [str(i - 1)], "webhook_url": "https://example.com/h"}
        for i in range(1, depth)
    ]
    jobs = batch(tenant, *entries).json()["jobs"]
    root = services.job_start(job_id=jobs[0]["id"])
    assert root is not None
    with CaptureQueriesContext(connection) as queries:
        services.job_fail(job=root, code="boom", message="boom", retryable=False)
    cancels = [q["sql"] for q in queries.captured_queries if "WITH RECURSIVE d(" in q["sql"]]
    # One statement cancels every level; the second (from the canceled jobs that have
    # dependents) finds the jobs submitted concurrently, here none.
    assert len(cancels) == 2
    rows = Job.objects.filter(pk__in=[j["id"] for j in jobs[1:]])
    assert {r.status for r in rows} == {JobStatus.CANCELED}
    assert {r.error["code"] for r in rows} == {"dependency_failed"}
    assert JobEvent.objects.filter(job__in=rows, to_status=JobStatus.CANCELED).count() == depth - 1
    assert (
        WebhookDelivery.objects.filter(job__in=rows, event_type="job.canceled").count() == depth - 1
    )
    # The webhook's job carries its depends_on, as the API shows it.
    delivery = WebhookDelivery.objects.get(job_id=jobs[5]["id"], event_type="job.canceled")
    data = job_to_dict(job_from_snapshot(delivery.job_snapshot))
    assert data["depends_on"] == [jobs[4]["id"]]
    assert data["error"]["code"] == "dependency_failed"


def test_cancel_cascades_to_waiting_dependents_only(tenant: Tenant) -> None:
    a = tenant.submit().json()["id"]
    other = tenant.submit().json()["id"]
    b = tenant.submit(depends_on=[a, other]).json()["id"]
    c = tenant.submit(depends_on=[b]).json()["id"]
    unrelated = tenant.submit(depends_on=[other]).json()["id"]
    assert tenant.post(f"/api/v1/jobs/{a}/cancel").status_code == 200
    assert get(tenant, b)["status"] == "canceled"
    assert get(tenant, c)["error"]["code"] == "dependency_failed"
    assert get(tenant, unrelated)["status"] == "queued"
    # The admin's cancel is the same service: a job canceled by a cascade is not cancelable.
    assert_error(tenant.post(f"/api/v1/jobs/{b}/cancel"), 409, "invalid_state")


def test_retry_waits_for_dependencies_again_or_refuses(tenant: Tenant) -> None:
    a = tenant.submit().json()["id"]
    b = tenant.submit(depends_on=[a]).json()["id"]
    fail(a)
    assert get(tenant, b)["status"] == "canceled"
    error = assert_error(tenant.post(f"/api/v1/jobs/{b}/retry"), 409, "invalid_state")
    assert error["details"]["depends_on"] == [a]
    assert tenant.post(f"/api/v1/jobs/{a}/retry").status_code == 202
    retried = tenant.post(f"/api/v1/jobs/{b}/retry")
    assert retried.status_code == 202
    assert retried.json()["wait_reason"] == "dependencies"
    run(a)
    assert get(tenant, b)["wait_reason"] == "capacity"


def test_a_duplicate_in_a_batch_stands_for_the_existing_job(tenant: Tenant) -> None:
    existing = tenant.submit(unique_key="u").json()["id"]
    jobs = batch(tenant, {"ref": "a", "unique_key": "u"}, {"depends_on": ["a"]}).json()["jobs"]
    assert jobs[0]["id"] == existing
    assert jobs[1]["depends_on"] == [existing]
    run(existing)
    assert get(tenant, jobs[1]["id"])["wait_reason"] == "capacity"


def test_waiting_dependents_do_not_slow_another_clients_claim(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    root = tenant.submit().json()["id"]
    batch(tenant, *({"depends_on": [root]} for _ in range(300)))
    theirs = other_tenant.submit().json()["id"]
    claimed = [services.job_claim_next(queue="default") for _ in range(3)]
    assert sorted(str(j.pk) for j in claimed if j) == sorted([root, theirs])
    # The waiting jobs are out of the claim's index altogether.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM jobs_job WHERE status = 'queued' AND NOT held "
            "AND pending_dependencies = 0"
        )
        assert cursor.fetchone()[0] == 0


# --- Indexes and the admin --------------------------------------------------------------------


def _plan(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_release_cancel_and_dependents_find_dependents_by_their_index(tenant: Tenant) -> None:
    """With a backlog of queued jobs, the statements that settle dependents read the small
    index of waiting dependents, never the queued jobs; the admin's dependents, the other."""
    from apps.jobs import store

    root = tenant.submit().json()["id"]
    for _ in range(3):
        batch(tenant, *({} for _ in range(1000)))
    batch(tenant, *({"depends_on": [root]} for _ in range(20)))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    at = "2026-01-01T00:00:00Z"
    release = _plan(store._release_statement(), {"ids": [uuid.UUID(root)], "at": at})
    assert "job_waiting_dependents" in release
    cancel = _plan(
        store._cancel_statement(),
        {
            "ids": [uuid.UUID(root)],
            "at": at,
            "error": "{}",
            "details": "{}",
            "outbox_event": "job.canceled",
            "outbox_at": at,
        },
    )
    assert "job_client_status_id" not in cancel
    assert "job_waiting_dependents" in cancel
    queryset = Job.objects.filter(depends_on__len__gt=0, depends_on__contains=[root])
    sql, params = queryset.query.sql_with_params()
    assert "job_depends_on" in _plan(sql, params)


def test_the_admin_links_dependencies_and_dependents(tenant: Tenant, admin_client: Any) -> None:
    a = tenant.submit().json()["id"]
    b = tenant.submit(depends_on=[a]).json()["id"]
    page_a = admin_client.get(f"/admin/jobs/job/{a}/change/").content.decode()
    assert f'<a href="/admin/jobs/job/{b}/change/">{b}</a>' in page_a
    page_b = admin_client.get(f"/admin/jobs/job/{b}/change/").content.decode()
    assert f'<a href="/admin/jobs/job/{a}/change/">{a}</a>' in page_b


def test_a_dependent_claimed_by_the_round_trip_wakes_no_pool(
    wakeups: Any, make_tenant: Any
) -> None:
    """The worker that releases a dependent and claims it in the same transaction publishes no
    wake-up for it; a released dependent it does not claim wakes its pool."""
    tenant = make_tenant()
    root = tenant.submit().json()["id"]
    first, second = (tenant.submit(depends_on=[root]).json()["id"] for _ in range(2))
    claimed = services.job_claim_next(queue="default")
    assert claimed is not None
    assert str(claimed.pk) == root
    wakeups.received()  # the submissions' own
    _, next_jobs = services.jobs_record_and_claim(
        outcomes=[Outcome(job=claimed, status=JobStatus.SUCCEEDED, result={})],
        claim=ClaimRequest(queue="default", size=1),
    )
    assert [str(j.pk) for j in next_jobs] == [first]
    assert wakeups.received() == {"default": 1}  # for ``second`` alone
    assert Job.objects.get(pk=second).pending_dependencies == 0
