"""Fair dispatch and flow control at claim time (API.md, "Sharing the pools fairly")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction

from apps.clients.models import ApiClient
from apps.core.errors import ValidationFailed
from apps.jobs import services
from apps.jobs.models import Job, JobEvent, JobStatus, RateWindow, RunningCount
from apps.jobs.registry import parse_rate
from apps.jobs.representation import job_to_dict
from apps.jobs.selectors import refine_wait_reasons
from tests.factories import ApiClientFactory

pytestmark = pytest.mark.django_db


def submit(client: ApiClient, **options: Any) -> Job:
    return services.job_submit(
        client=client, data={"type": "diagnostics.echo", "input": {"message": "x"}, **options}
    )


def claim() -> Job | None:
    return services.job_claim_next(queue="default")


def claimed_clients(n: int) -> list[int]:
    jobs = [claim() for _ in range(n)]
    assert all(job is not None for job in jobs)
    return [job.client_id for job in jobs if job is not None]


def counts(client: ApiClient) -> dict[str, int]:
    return dict(RunningCount.objects.filter(client=client).values_list("key", "running"))


def test_a_backlog_does_not_delay_another_clients_job() -> None:
    a, b = ApiClientFactory(), ApiClientFactory()
    backlog = [submit(a) for _ in range(20)]
    late = submit(b)
    first = claim()
    assert first is not None
    assert first.pk == backlog[0].pk
    # A has one running, B none: B's job is next, not A's 19 older ones.
    second = claim()
    assert second is not None
    assert second.pk == late.pk
    assert claimed_clients(3) == [a.pk] * 3


def test_workers_are_shared_in_proportion_to_weights() -> None:
    a, b = ApiClientFactory(weight=2), ApiClientFactory(weight=1)
    for _ in range(10):
        submit(a)
    for _ in range(10):
        submit(b)
    taken = claimed_clients(9)
    assert taken.count(a.pk) == 6
    assert taken.count(b.pk) == 3


def test_priority_orders_a_clients_own_jobs_not_other_clients() -> None:
    a, b = ApiClientFactory(), ApiClientFactory()
    a_normal = submit(a)
    a_high = submit(a, priority="high")
    b_low = submit(b, priority="low")
    first = claim()
    assert first is not None
    assert first.pk == a_high.pk
    second = claim()
    assert second is not None
    assert second.pk == b_low.pk
    third = claim()
    assert third is not None
    assert third.pk == a_normal.pk


def test_a_client_at_its_cap_waits_and_others_run() -> None:
    capped, other = ApiClientFactory(max_running_jobs=1), ApiClientFactory()
    first, second = submit(capped), submit(capped)
    mine = submit(other)
    assert {job.pk for job in (claim(), claim()) if job} == {first.pk, mine.pk}
    assert Job.objects.get(pk=first.pk).status == JobStatus.RUNNING
    assert Job.objects.get(pk=mine.pk).status == JobStatus.RUNNING
    assert claim() is None
    assert counts(capped)[""] == 1
    [waiting] = refine_wait_reasons([job_to_dict(Job.objects.get(pk=second.pk))], client=capped)
    assert waiting["wait_reason"] == "client_limit"
    done = services.job_succeed(job=Job.objects.get(pk=first.pk), result={})
    assert done is not None
    assert counts(capped)[""] == 0
    nxt = claim()
    assert nxt is not None
    assert nxt.pk == second.pk
    assert job_to_dict(nxt)["wait_reason"] is None


def test_a_concurrency_key_runs_at_most_its_limit() -> None:
    client = ApiClientFactory()
    keyed = [submit(client, concurrency_key="acct:1", concurrency_limit=2) for _ in range(4)]
    free = submit(client)
    taken = [claim(), claim(), claim()]
    assert {job.pk for job in taken if job} == {keyed[0].pk, keyed[1].pk, free.pk}
    assert claim() is None
    assert counts(client)["acct:1"] == 2
    [blocked] = refine_wait_reasons([job_to_dict(Job.objects.get(pk=keyed[2].pk))], client=client)
    assert blocked["wait_reason"] == "concurrency_limit"
    # A failed attempt that is retried later gives its slot back too.
    running = Job.objects.get(pk=keyed[0].pk)
    assert services.job_fail(job=running, code="error", message="x", retryable=True)
    assert counts(client)["acct:1"] == 1
    nxt = claim()
    assert nxt is not None
    assert nxt.pk == keyed[2].pk
    assert claim() is None


def test_keys_are_per_client() -> None:
    a, b = ApiClientFactory(), ApiClientFactory()
    ja = submit(a, concurrency_key="same")
    jb = submit(b, concurrency_key="same")
    assert {job.pk for job in (claim(), claim()) if job} == {ja.pk, jb.pk}


def test_a_key_defaults_to_a_limit_of_one_and_is_shown() -> None:
    client = ApiClientFactory()
    job = submit(client, concurrency_key="k")
    body = job_to_dict(job)
    assert body["concurrency_key"] == "k"
    assert body["concurrency_limit"] == 1
    assert body["wait_reason"] == "capacity"
    plain = job_to_dict(submit(client, concurrency_limit=3))  # a limit without a key: no limit
    assert plain["concurrency_key"] is None
    assert plain["concurrency_limit"] is None
    later = job_to_dict(submit(client, delay_seconds=600))
    assert later["wait_reason"] == "scheduled"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"concurrency_key": ""}, "concurrency_key"),
        ({"concurrency_key": "x" * 201}, "concurrency_key"),
        ({"concurrency_key": "tab\there"}, "concurrency_key"),
        ({"concurrency_key": 5}, "concurrency_key"),
        ({"concurrency_key": "k", "concurrency_limit": 0}, "concurrency_limit"),
        ({"concurrency_key": "k", "concurrency_limit": 1001}, "concurrency_limit"),
        ({"concurrency_key": "k", "concurrency_limit": "2"}, "concurrency_limit"),
    ],
)
def test_invalid_flow_control_options_are_refused(options: dict[str, Any], field: str) -> None:
    client = ApiClientFactory()
    with pytest.raises(ValidationFailed) as caught:
        submit(client, **options)
    assert field in caught.value.details
    assert not Job.objects.filter(client=client).exists()


def test_the_api_tells_why_a_queued_job_waits(tenant: Any) -> None:
    first = tenant.submit(concurrency_key="report", concurrency_limit=1).json()
    second = tenant.submit(concurrency_key="report").json()
    plain = tenant.submit().json()
    assert second["wait_reason"] == "capacity"
    # The first job of the key (the oldest) runs; the second waits on its key.
    running = claim()
    assert running is not None
    assert str(running.pk) == first["id"]
    for _ in range(2):  # from the database, then from the status cache
        body = tenant.get(f"/api/v1/jobs/{second['id']}").json()
        assert body["wait_reason"] == "concurrency_limit"
    assert tenant.get(f"/api/v1/jobs/{plain['id']}").json()["wait_reason"] == "capacity"
    assert tenant.get(f"/api/v1/jobs/{first['id']}").json()["wait_reason"] is None
    listed = {job["id"]: job["wait_reason"] for job in tenant.get("/api/v1/jobs").json()["results"]}
    assert listed == {first["id"]: None, second["id"]: "concurrency_limit", plain["id"]: "capacity"}
    services.job_succeed(job=running, result={})
    assert tenant.get(f"/api/v1/jobs/{second['id']}").json()["wait_reason"] == "capacity"


def test_a_rate_limited_type_starts_at_most_its_rate_and_wakes_its_pool_when_the_window_ends(
    tenant: Any,
) -> None:
    ids = [tenant.submit(type="testing.rated", input={}).json()["id"] for _ in range(3)]
    plain = submit(tenant.client)
    assert services.rate_limited_wait("default") is None
    started = [claim(), claim()]
    assert {str(job.pk) for job in started if job} == set(ids[:2])
    # The window (2 a second) is full: the third waits, other types do not.
    other = claim()
    assert other is not None
    assert other.pk == plain.pk
    assert claim() is None
    assert tenant.get(f"/api/v1/jobs/{ids[2]}").json()["wait_reason"] == "rate_limit"
    wait = services.rate_limited_wait("default")
    assert wait is not None
    assert 0 < wait <= 1
    window = RateWindow.objects.get(job_type="testing.rated")
    RateWindow.objects.filter(pk=window.pk).update(
        window_start=window.window_start - timedelta(seconds=1)
    )
    assert services.rate_limited_wait("default") is None
    third = claim()
    assert third is not None
    assert str(third.pk) == ids[2]
    assert RateWindow.objects.get(pk=window.pk).starts == 1


def test_a_rate_must_be_well_formed() -> None:
    for bad in ("20", "0/s", "20/d", "x/s", "20/ s"):
        with pytest.raises(ValueError, match="rate_limit"):
            parse_rate(bad)
    assert parse_rate("600/m") == (600, 60)


def test_flow_control_options_follow_the_submission_rules() -> None:
    """Like every optional field of a submission: left out, or a value of its type (null is
    refused); a limit defaults to 1 with a key and has no effect without one."""
    client = ApiClientFactory()
    nulls = {
        "concurrency_key": {"concurrency_key": None},
        "concurrency_limit": {"concurrency_key": "k", "concurrency_limit": None},
    }
    for field, options in nulls.items():
        with pytest.raises(ValidationFailed) as refused:
            submit(client, **options)
        assert set(refused.value.details) == {field}
    plain = job_to_dict(submit(client))
    assert (plain["concurrency_key"], plain["concurrency_limit"]) == (None, None)
    assert job_to_dict(submit(client, concurrency_key="k"))["concurrency_limit"] == 1
    assert (
        job_to_dict(submit(client, concurrency_key="k", concurrency_limit=4.0))["concurrency_limit"]
        == 4
    )
    unkeyed = job_to_dict(submit(client, concurrency_limit=3))
    assert (unkeyed["concurrency_key"], unkeyed["concurrency_limit"]) == (None, None)


# --- Claims of several jobs at once (workers/runtime.py claims in batches) ----------------------


def claim_batch(size: int) -> list[Job]:
    _, claimed = services.jobs_record_and_claim(claim=services.ClaimRequest("default", size))
    return claimed


def singles_then_batch(size: int) -> tuple[list[Any], list[Job]]:
    """The ids ``size`` single claims take (then undone), and the jobs one batch claim takes."""
    undo = transaction.savepoint_create()
    singles = [job.pk for job in (claim() for _ in range(size)) if job is not None]
    transaction.savepoint_rollback(undo)
    return singles, claim_batch(size)


def test_a_batch_claim_shares_by_weight_as_single_claims_do() -> None:
    a, b = ApiClientFactory(weight=2), ApiClientFactory(weight=1)
    for _ in range(10):
        submit(a)
    late = submit(b)
    for _ in range(9):
        submit(b)
    singles, taken = singles_then_batch(9)
    assert [job.pk for job in taken] == singles
    clients = [job.client_id for job in taken]
    assert (clients.count(a.pk), clients.count(b.pk)) == (6, 3)
    # B's first job comes third (A's share is twice B's), not after A's backlog.
    assert taken[2].pk == late.pk
    # Each client's jobs in its own order: oldest first.
    for client in (a, b):
        mine = [job.pk for job in taken if job.client_id == client.pk]
        assert mine == sorted(mine)


def test_a_batch_claim_keeps_caps_keys_and_priorities() -> None:
    capped, keyed, other = (
        ApiClientFactory(max_running_jobs=2),
        ApiClientFactory(),
        ApiClientFactory(),
    )
    for _ in range(5):
        submit(capped)
    for _ in range(5):
        submit(keyed, concurrency_key="acct", concurrency_limit=2)
    low = submit(other, priority="low")
    high = submit(other, priority="high")
    singles, taken = singles_then_batch(20)
    assert [job.pk for job in taken] == singles
    by_client = {c.pk: [j for j in taken if j.client_id == c.pk] for c in (capped, keyed, other)}
    assert len(by_client[capped.pk]) == 2
    assert len(by_client[keyed.pk]) == 2
    assert [j.pk for j in by_client[other.pk]] == [high.pk, low.pk]
    assert counts(capped)[""] == 2
    assert counts(keyed)["acct"] == 2
    # Nothing more is claimable until a slot is given back.
    assert claim_batch(5) == []
    assert all(Job.objects.get(pk=j.pk).status == JobStatus.RUNNING for j in taken)


def test_a_batch_claim_keeps_a_rate_limit(tenant: Any) -> None:
    ids = [tenant.submit(type="testing.rated", input={}).json()["id"] for _ in range(4)]
    plain = submit(tenant.client)
    taken = claim_batch(10)
    assert sorted(str(j.pk) for j in taken if j.type == "testing.rated") == sorted(ids[:2])
    assert plain.pk in {j.pk for j in taken}
    assert len(taken) == 3
    assert RateWindow.objects.get(job_type="testing.rated").starts == 2


def test_outcomes_and_the_next_claim_are_one_transaction_and_given_back_jobs_count_nothing() -> (
    None
):
    client = ApiClientFactory(max_running_jobs=3)
    jobs = [submit(client, concurrency_key="k", concurrency_limit=3) for _ in range(5)]
    first = claim_batch(3)
    assert [j.pk for j in first] == [j.pk for j in jobs[:3]]
    done, unstarted = first[0], first[1:]
    recorded, claimed = services.jobs_record_and_claim(
        outcomes=[services.Outcome(done, JobStatus.SUCCEEDED, result={"ok": 1})],
        give_back=unstarted,
        claim=services.ClaimRequest("default", 5),
    )
    assert recorded[0] is not None
    assert recorded[0].status == JobStatus.SUCCEEDED
    # Three slots free again (one finished, two given back), so three are claimed: the two
    # given back first (oldest), then the next one.
    assert [j.pk for j in claimed] == [j.pk for j in jobs[1:4]]
    assert [j.attempts for j in claimed] == [1, 1, 1]
    back = JobEvent.objects.filter(job_id=jobs[1].pk).order_by("id")
    assert [(e.from_status, e.to_status) for e in back] == [
        ("", "queued"),
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
    ]
    assert back[2].attempt == 0
    assert counts(client) == {"": 3, "k": 3}
    # A lost claim's outcome is discarded: the row has moved on (here: already succeeded).
    again, _ = services.jobs_record_and_claim(
        outcomes=[services.Outcome(done, JobStatus.SUCCEEDED, result={"ok": 2})]
    )
    assert again == [None]
    assert Job.objects.get(pk=done.pk).result == {"ok": 1}
    assert counts(client) == {"": 3, "k": 3}
    # Several successes in one statement give back every slot they held, not one per row.
    ended, _ = services.jobs_record_and_claim(
        outcomes=[
            services.Outcome(j, JobStatus.SUCCEEDED, result={"n": i}) for i, j in enumerate(claimed)
        ]
    )
    assert [(j.status, j.result) for j in ended if j] == [
        (JobStatus.SUCCEEDED, {"n": i}) for i in range(3)
    ]
    assert counts(client) == {"": 0, "k": 0}
    for job in claimed:
        assert JobEvent.objects.filter(job_id=job.pk, to_status="succeeded").count() == 1
