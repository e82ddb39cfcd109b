"""The job store: every status change goes through it and the services, each event of a declared
kind; and the one failure policy that the worker and the maintenance loop share."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs import maintenance, services, store
from apps.jobs.models import Job, JobEvent, JobStatus
from apps.jobs.store import TRANSITIONS, Event, EventKind, InvalidTransition
from tests.factories import JobFactory

ROOT = Path(__file__).resolve().parents[2]
STORE = "apps/jobs/store.py"
SERVICES = "apps/jobs/services.py"
# Job-writing verbs of a queryset or helper that would change a status when given ``status=``.
WRITES = {"update", "update_returning", "bulk_update", "update_or_create", "get_or_create"}


def _sources() -> list[tuple[str, ast.Module]]:
    found = []
    for top in ("apps", "workers", "config"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found.append((str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))))
    return found


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _status_writes_and_event_writes(tree: ast.Module) -> list[str]:
    """Where a module writes a JobEvent or a Job's status itself (line: what)."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "JobEvent"
            and node.attr in {"objects", "_meta", "_default_manager"}
        ):
            found.append(f"{node.lineno}: JobEvent.{node.attr}")
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "JobEvent":
                found.append(f"{node.lineno}: JobEvent(...)")
            verb = node.func.attr if isinstance(node.func, ast.Attribute) else None
            if isinstance(node.func, ast.Name):
                verb = node.func.id
            sets_status = any(k.arg == "status" for k in node.keywords)
            if verb in WRITES and sets_status and "Job" in _names_in(node):
                found.append(f"{node.lineno}: {verb}(status=...) of a Job")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "jobs_jobevent" in node.value
        ):
            found.append(f"{node.lineno}: SQL naming jobs_jobevent")
    return found


def test_only_the_store_writes_job_events_or_statuses() -> None:
    offenders = {
        path: lines
        for path, tree in _sources()
        if path != STORE and (lines := _status_writes_and_event_writes(tree))
    }
    assert offenders == {}


def test_the_detector_finds_an_event_written_elsewhere() -> None:
    """What maintenance did before the store: its own UPDATE of statuses and its own events."""
    tree = ast.parse(
        "def promote(ids, now):\n"
        "    jobs = update_returning(Job.objects.filter(pk__in=ids), status='queued')\n"
        "    JobEvent.objects.bulk_create([JobEvent(job_id=j.pk) for j in jobs])\n"
    )
    assert [line.split(": ", 1)[1] for line in _status_writes_and_event_writes(tree)] == [
        "update_returning(status=...) of a Job",
        "JobEvent.objects",
        "JobEvent(...)",
    ]


def test_only_the_services_call_the_store_and_name_event_kinds() -> None:
    importers, kinds_used = set(), {}
    for path, tree in _sources():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "apps.jobs.store"
                # The webhooks app registers its outbox at start-up; it writes nothing.
                and {alias.name for alias in node.names} != {"use_outbox"}
            ):
                importers.add(path)
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "apps.jobs"
                and any(alias.name == "store" for alias in node.names)
            ):
                importers.add(path)
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "EventKind"
            ):
                kinds_used.setdefault(node.attr, set()).add(path)
    assert importers == {SERVICES}
    assert {path for paths in kinds_used.values() for path in paths} <= {SERVICES, STORE}
    # Each kind is produced somewhere: by a service, or (creation) by the store's INSERT.
    produced = {kind for kind, paths in kinds_used.items() if SERVICES in paths}
    assert produced | {EventKind.CREATED.name} == {kind.name for kind in EventKind}


def _all_transitions() -> set[tuple[str, str]]:
    return set().union(*TRANSITIONS.values())


@pytest.mark.django_db
def test_every_event_of_a_jobs_life_is_a_declared_transition(wakeups: Any) -> None:
    # Every service that changes a status, each path at least once.
    done = services.job_start(job_id=JobFactory().pk)
    assert done is not None
    services.job_succeed(job=done, result={})
    flaky = services.job_start(job_id=JobFactory(max_attempts=2).pk)
    assert flaky is not None
    retrying = services.job_fail(job=flaky, code="x", message="x", retryable=True)
    assert retrying is not None
    assert retrying.status == JobStatus.RETRYING
    services.jobs_promote_due_batch(now=timezone.now() + timedelta(hours=1))
    again = services.job_start(job_id=flaky.pk)
    assert again is not None
    failed = services.job_fail(job=again, code="x", message="x", retryable=True)
    assert failed is not None
    assert failed.status == JobStatus.FAILED
    services.job_retry(job=failed)
    services.job_cancel(job=JobFactory(status=JobStatus.SCHEDULED, run_at=timezone.now()))
    running = services.job_start(job_id=JobFactory().pk)
    assert running is not None
    requested, _ = services.job_cancel(job=running)
    services.job_finish_canceled(job=requested)
    lost = services.job_start(job_id=JobFactory().pk)
    assert lost is not None
    Job.objects.filter(pk=lost.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5) == 1
    events = set(JobEvent.objects.values_list("from_status", "to_status"))
    assert events <= _all_transitions()
    assert {
        ("queued", "running"),
        ("running", "succeeded"),
        ("running", "retrying"),
        ("retrying", "queued"),
        ("running", "failed"),
        ("failed", "queued"),
        ("scheduled", "canceled"),
        ("running", "running"),
        ("running", "canceled"),
        ("running", "queued"),
    } <= events


@pytest.mark.django_db
def test_the_store_refuses_an_event_its_kind_does_not_declare() -> None:
    job = JobFactory()
    with pytest.raises(InvalidTransition):
        store.change_job(
            where={"id": job.pk, "status": JobStatus.QUEUED},
            changes={"status": JobStatus.SUCCEEDED},
            event=Event(kind=EventKind.CLAIMED, at=timezone.now()),
        )
    with pytest.raises(InvalidTransition):  # a status change without its event
        store.change_job(
            where={"id": job.pk, "status": JobStatus.QUEUED},
            changes={"status": JobStatus.RUNNING},
            event=None,
        )
    with pytest.raises(InvalidTransition):
        store.insert_jobs([Job(status=JobStatus.RUNNING)])
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert not JobEvent.objects.exists()


# --- The one failure policy --------------------------------------------------------------


def _lost(**fields: Any) -> Job:
    job = services.job_start(job_id=JobFactory(**fields).pk, worker="w@gone")
    assert job is not None
    return job


@pytest.mark.django_db
def test_a_lost_attempt_waits_out_its_backoff_from_its_last_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "retry_delay", lambda job, attempt: 120.0)
    job = _lost(max_attempts=3)
    beat = timezone.now() - timedelta(seconds=60)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=beat)
    assert maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5) == 1
    recovered = Job.objects.get(pk=job.pk)
    assert (recovered.status, recovered.error["code"]) == (JobStatus.RETRYING, "worker_lost")
    assert recovered.run_at == beat + timedelta(seconds=120)
    event = JobEvent.objects.get(job_id=job.pk, from_status="running")
    assert (event.to_status, event.details["recovered"]) == ("retrying", True)
    # Due when its backoff is over, like any retry.
    assert services.jobs_promote_due_batch(now=beat + timedelta(seconds=119)) == 0
    assert services.jobs_promote_due_batch(now=beat + timedelta(seconds=121)) == 1
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


@pytest.mark.parametrize(
    ("job_type", "status"),
    [
        ("testing.hog", JobStatus.FAILED),  # retry_on_timeout=False
        # echo retries timeouts and backs off at most 1 s on a first failure: long past.
        ("diagnostics.echo", JobStatus.QUEUED),
    ],
)
@pytest.mark.django_db
def test_a_job_that_overran_its_timeout_is_retried_only_if_its_type_retries_timeouts(
    job_type: str, status: str
) -> None:
    job = _lost(type=job_type, max_attempts=3, timeout_seconds=1)
    long_ago = timezone.now() - timedelta(seconds=60)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=long_ago, started_at=long_ago)
    maintenance.jobs_recover_stale(heartbeat_timeout=30, grace=5)
    recovered = Job.objects.get(pk=job.pk)
    assert (recovered.status, recovered.error["code"]) == (status, "timeout")


@pytest.mark.django_db
def test_the_worker_and_the_maintenance_loop_decide_a_failure_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "retry_delay", lambda job, attempt: 10.0)
    now = timezone.now()
    job = _lost(max_attempts=2)
    retry = services.failure_outcome(job, retryable=True, failed_at=now, now=now)
    assert retry == (
        JobStatus.RETRYING,
        {"run_at": now + timedelta(seconds=10), "finished_at": None},
    )
    later = now + timedelta(seconds=11)
    assert services.failure_outcome(job, retryable=True, failed_at=now, now=later) == (
        JobStatus.QUEUED,
        {"enqueued_at": later},
    )
    assert services.failure_outcome(job, retryable=False, failed_at=now, now=now).status == (
        JobStatus.FAILED
    )
    job.attempts = 2
    assert services.failure_outcome(job, retryable=True, failed_at=now, now=now).status == (
        JobStatus.FAILED
    )
    job.cancel_requested = True
    assert services.failure_outcome(job, retryable=True, failed_at=now, now=now).status == (
        JobStatus.CANCELED
    )
    # The worker's report goes through the same decision.
    failing = _lost(max_attempts=2)
    reported = services.job_fail(job=failing, code="boom", message="x", retryable=True, now=now)
    assert reported is not None
    assert (reported.status, reported.run_at) == (JobStatus.RETRYING, now + timedelta(seconds=10))
