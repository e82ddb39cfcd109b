"""The synchronous Client against a live Conveyor: every method, its errors by code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from conveyor_client import (
    Client,
    ConnectionFailed,
    IdempotencyConflict,
    InvalidState,
    Job,
    NotAuthenticated,
    NotFound,
    ValidationError,
    WaitTimeout,
)


def test_submit_returns_the_stored_job(client: Client) -> None:
    job = client.submit(
        "diagnostics.echo",
        {"message": "hello"},
        priority="high",
        max_attempts=2,
        timeout_seconds=60,
        metadata={"order": "42"},
    )
    assert isinstance(job, Job)
    assert job.type == "diagnostics.echo"
    assert job.status in {"queued", "running", "succeeded"}
    assert (job.priority, job.max_attempts, job.timeout_seconds) == ("high", 2, 60)
    assert job.metadata == {"order": "42"}
    # The client always sends an Idempotency-Key, generated when the caller gives none.
    assert job.idempotency_key
    assert job.idempotency_key.startswith("cvc-")
    assert job.created_at is not None
    assert job.created_at.tzinfo is not None


def test_wait_returns_the_result_and_reports_progress(client: Client) -> None:
    job = client.submit(
        "diagnostics.echo", {"message": "p", "sleep_seconds": 0.6, "progress_steps": 3}
    )
    seen: list[int] = []
    done = client.wait(job.id, timeout=30, on_progress=lambda j: seen.append(j.progress.percent))
    assert done.status == "succeeded"
    assert done.result == {"message": "p", "attempt": 1}
    assert seen
    assert seen[-1] == 100
    assert seen == sorted(seen)


def test_wait_gives_up_after_its_timeout_with_the_last_state(client: Client) -> None:
    job = client.submit("diagnostics.echo", {"message": "later"}, delay_seconds=3600)
    with pytest.raises(WaitTimeout) as caught:
        client.wait(job, timeout=1.2)
    assert caught.value.job.status == "scheduled"
    assert caught.value.code == "wait_timeout"
    client.cancel(job.id)


def test_wait_on_a_failed_job_returns_it_with_its_error(client: Client) -> None:
    job = client.submit("diagnostics.echo", {"message": "x", "fail_permanently": True})
    done = client.wait(job.id, timeout=30)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.code
    assert isinstance(done.error.details, dict)


def test_prefer_wait_answers_with_the_finished_job(client: Client) -> None:
    job = client.submit("diagnostics.echo", {"message": "now"}, prefer_wait=20)
    assert job.status == "succeeded"
    assert job.result == {"message": "now", "attempt": 1}


def test_submit_with_wait_answers_with_the_finished_job_in_one_request(conveyor_server) -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(timeout=10, event_hooks={"request": [sent.append]})
    with Client(conveyor_server.url, conveyor_server.tenant.api_key, http_client=http) as client:
        job = client.submit("diagnostics.echo", {"message": "now"}, wait=20)
    assert job.status == "succeeded"
    assert job.result == {"message": "now", "attempt": 1}
    assert [(r.method, r.headers.get("Prefer")) for r in sent] == [("POST", "wait=20")]


def test_submit_with_wait_gives_up_after_its_time_with_the_last_state(client: Client) -> None:
    with pytest.raises(WaitTimeout) as caught:
        client.submit("diagnostics.echo", {"message": "slow", "sleep_seconds": 4}, wait=1.5)
    assert caught.value.job.status in {"queued", "running"}
    client.cancel(caught.value.job.id)
    with pytest.raises(ValueError, match="wait"):
        client.submit("diagnostics.echo", {"message": "x"}, wait=0)


def test_wait_long_polls_from_the_submissions_etag_at_once(conveyor_server) -> None:
    # The submission's answer carries the job's ETag (also through the Idempotency-Key path),
    # so wait() never needs a plain GET first: every request it makes is a long-poll.
    sent: list[httpx.Request] = []
    http = httpx.Client(timeout=10, event_hooks={"request": [sent.append]})
    with Client(conveyor_server.url, conveyor_server.tenant.api_key, http_client=http) as client:
        job = client.submit("diagnostics.echo", {"message": "etag"})
        assert job.etag
        done = client.wait(job, timeout=30)
    assert done.status == "succeeded"
    polls = sent[1:]
    assert polls
    assert polls[0].headers["If-None-Match"] == job.etag
    assert all("wait" in r.url.params and "If-None-Match" in r.headers for r in polls)


def test_wait_on_a_finished_job_answers_without_a_request(conveyor_server) -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(timeout=10, event_hooks={"request": [sent.append]})
    with Client(conveyor_server.url, conveyor_server.tenant.api_key, http_client=http) as client:
        done = client.submit("diagnostics.echo", {"message": "done"}, prefer_wait=20)
        assert done.status == "succeeded"
        assert client.wait(done, timeout=5) is done
    assert len(sent) == 1


def test_get_cancel_and_retry(client: Client) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    job = client.submit("diagnostics.echo", {"message": "c"}, run_at=run_at)
    assert job.status == "scheduled"
    assert job.run_at is not None
    assert abs((job.run_at - run_at).total_seconds()) < 1
    assert client.get(job.id).id == job.id
    canceled = client.cancel(job.id)
    assert canceled.status == "canceled"
    with pytest.raises(InvalidState) as caught:
        client.cancel(job.id)
    assert caught.value.code == "invalid_state"
    assert caught.value.status == 409
    assert caught.value.request_id
    again = client.retry(job.id)
    assert again.status in {"queued", "running", "succeeded"}
    assert client.wait(job.id, timeout=30).status == "succeeded"


def test_unknown_or_foreign_job_is_not_found(client: Client, conveyor_server) -> None:
    job = client.submit("diagnostics.echo", {"message": "mine"})
    other = Client(conveyor_server.url, conveyor_server.other.api_key)
    with other, pytest.raises(NotFound) as caught:
        other.get(job.id)
    assert caught.value.code == "not_found"
    with pytest.raises(NotFound):
        client.get(str(uuid.uuid4()))


def test_validation_error_has_the_field_details(client: Client) -> None:
    with pytest.raises(ValidationError) as caught:
        client.submit("diagnostics.echo", {"message": "x" * 10_001})
    assert caught.value.code == "validation_error"
    assert caught.value.details
    with pytest.raises(ValidationError):
        client.submit("no.such.type", {})


def test_unknown_submission_option_is_refused_before_sending(client: Client) -> None:
    with pytest.raises(TypeError, match="colour"):
        client.submit("diagnostics.echo", {"message": "x"}, colour="red")  # type: ignore[call-arg]


def test_a_bad_key_is_not_authenticated(conveyor_server) -> None:
    with (
        Client(conveyor_server.url, "cvk_not-a-key") as bad,
        pytest.raises(NotAuthenticated) as caught,
    ):
        bad.job_types()
    assert caught.value.code == "not_authenticated"


def test_same_idempotency_key_replays_and_a_different_body_conflicts(client: Client) -> None:
    key = f"test-{uuid.uuid4()}"
    first = client.submit("diagnostics.echo", {"message": "once"}, idempotency_key=key)
    second = client.submit("diagnostics.echo", {"message": "once"}, idempotency_key=key)
    assert second.id == first.id
    with pytest.raises(IdempotencyConflict) as caught:
        client.submit("diagnostics.echo", {"message": "other"}, idempotency_key=key)
    assert caught.value.code == "idempotency_conflict"


def test_unique_key_answers_the_existing_job(client: Client) -> None:
    key = f"u-{uuid.uuid4()}"
    first = client.submit("diagnostics.echo", {"message": "u"}, unique_key=key, delay_seconds=600)
    second = client.submit("diagnostics.echo", {"message": "u"}, unique_key=key, delay_seconds=600)
    assert second.id == first.id
    assert first.unique_key == key
    client.cancel(first.id)


def test_concurrency_options_are_sent(client: Client) -> None:
    job = client.submit(
        "diagnostics.echo",
        {"message": "k"},
        concurrency_key="tenant-7",
        concurrency_limit=2,
        webhook_events=["job.succeeded"],
        retry_backoff_seconds=1.5,
    )
    assert (job.concurrency_key, job.concurrency_limit) == ("tenant-7", 2)
    assert job.webhook_events == ["job.succeeded"]
    assert job.retry_backoff_seconds == 1.5


def test_submit_batch_keeps_the_order(client: Client) -> None:
    jobs = client.submit_batch(
        [
            {"type": "diagnostics.echo", "input": {"message": "a"}},
            {"type": "diagnostics.echo", "input": {"message": "b"}, "delay_seconds": 600},
        ]
    )
    assert [j.input["message"] for j in jobs] == ["a", "b"]
    assert jobs[1].status == "scheduled"
    client.cancel(jobs[1].id)
    with pytest.raises(ValidationError):
        client.submit_batch([{"type": "diagnostics.echo", "input": {}}])


def test_list_iterates_across_pages_with_filters(client: Client) -> None:
    label = uuid.uuid4().hex
    made = client.submit_batch(
        [
            {"type": "diagnostics.echo", "input": {"message": str(i)}, "metadata": {"run": label}}
            for i in range(5)
        ]
    )
    listed = list(client.list(metadata={"run": label}, limit=2))
    assert [j.id for j in listed] == [j.id for j in reversed(made)]  # newest first
    assert list(client.list(metadata={"run": label}, status="canceled")) == []
    assert len(list(client.list(metadata={"run": label}, type=["diagnostics.echo"]))) == 5
    with pytest.raises(ValidationError):
        list(client.list(status="nonsense"))


def test_job_types_describe_the_registry(client: Client) -> None:
    types = {t.name: t for t in client.job_types()}
    echo = types["diagnostics.echo"]
    assert echo.queue == "default"
    assert "message" in echo.input_schema["properties"]


def test_schedules_lifecycle(client: Client) -> None:
    name = f"nightly-{uuid.uuid4().hex[:8]}"
    schedule = client.create_schedule(
        name,
        "30 2 * * *",
        {"type": "diagnostics.echo", "input": {"message": "s"}, "priority": "low"},
        timezone="Europe/Paris",
    )
    assert schedule.name == name
    assert schedule.timezone == "Europe/Paris"
    assert schedule.next_run_at is not None
    assert client.get_schedule(schedule.id).cron == "30 2 * * *"
    assert schedule.id in {s.id for s in client.list_schedules(limit=1)}
    paused = client.update_schedule(schedule.id, enabled=False)
    assert paused.enabled is False
    job = client.trigger_schedule(schedule.id)
    assert job.schedule_id == schedule.id
    assert job.priority == "low"
    assert client.wait(job.id, timeout=30).result == {"message": "s", "attempt": 1}
    client.delete_schedule(schedule.id)
    with pytest.raises(NotFound):
        client.get_schedule(schedule.id)
    with pytest.raises(ValidationError) as caught:
        client.create_schedule("bad", "61 * * * *", {"type": "diagnostics.echo", "input": {}})
    assert caught.value.details


def test_an_unreachable_server_is_connection_failed() -> None:
    from conveyor_client import RetryPolicy

    policy = RetryPolicy(retries=1, backoff=0.01)
    dead = Client("http://127.0.0.1:9", "k", retry_policy=policy)
    with dead, pytest.raises(ConnectionFailed) as caught:
        dead.get("x")
    assert caught.value.code == "connection_failed"
