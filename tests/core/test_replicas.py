"""Read routing and replica rotation, in this process, against a real streaming replica.

``replica_alias`` attaches the throwaway cluster's replica as ``replica0`` while ``default``
stays the test database: the two hold different data, so what a read returns tells which
server answered it. The tests run without pytest-django's wrapping transaction
(``transaction=True``): inside a transaction every read goes to the primary, by design.
"""

from __future__ import annotations

import json
import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import router, transaction

from apps.clients.models import ApiClient
from apps.core import replicas
from apps.core.health import forget_readiness
from apps.core.replicas import (
    allow_replica_reads,
    primary_reads,
    read_scope,
    replica_reads,
)
from apps.jobs.models import Job
from tests.support.processes import wait_for
from tests.support.replica_fixtures import REPLICA_ALIAS, Cluster

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", REPLICA_ALIAS]),
    pytest.mark.usefixtures("replica_alias", "replica_pair"),
]


def _insert_job_on_primary(cluster: Cluster, client: str, status: str = "queued") -> str:
    """A job row written straight into the cluster's primary (no API, no pin)."""
    from apps.core.ids import uuid7_with_time

    job_id, created = uuid7_with_time()
    cluster.pg.primary.sql(
        "INSERT INTO jobs_job (id, client_id, type, status, input, priority, queue, attempts,"
        " max_attempts, timeout_seconds, webhook_events, metadata, created_at, cancel_requested,"
        " version, request_id, task_id, worker) VALUES (%s, %s, 'diagnostics.echo', %s, '{}', 1,"
        " 'default', 0, 3, 300, '[]', '{}', %s, false, 1, '', '', '')",
        [job_id, cluster.clients[client].id, status, created],
    )
    return str(job_id)


def test_only_an_open_scope_outside_a_transaction_reads_the_replica(replica_alias: str) -> None:
    # Workers, services, shells: no scope at all.
    assert router.db_for_read(Job) == "default"
    with read_scope() as scope:
        # A request before its view has decided (authentication reads, for one).
        assert router.db_for_read(Job) == "default"
        allow_replica_reads()
        assert router.db_for_read(Job) == replica_alias
        assert scope.used_replica == replica_alias
        with transaction.atomic():
            assert router.db_for_read(Job) == "default"
        with primary_reads():
            allow_replica_reads()  # a primary-only block stays one
            assert router.db_for_read(Job) == "default"
        assert router.db_for_read(Job) == replica_alias
    assert router.db_for_write(Job) == "default"
    assert router.db_for_read(Job) == "default"


def test_an_open_scope_reads_what_the_replica_holds(
    replica_alias: str, replica_pair: Cluster
) -> None:
    job_id = _insert_job_on_primary(replica_pair, "alpha")
    replica_pair.pg.wait_replayed()
    assert not Job.objects.filter(pk=job_id).exists()  # the test database has no such job
    with replica_reads():
        assert Job.objects.filter(pk=job_id).exists()
        # A related object comes from the same server.
        job = Job.objects.select_related("client").get(pk=job_id)
        assert job.client.name == "alpha"
        assert job._state.db == replica_alias


def test_queue_stats_reads_the_replica(replica_alias: str, replica_pair: Cluster) -> None:
    for _ in range(3):
        _insert_job_on_primary(replica_pair, "beta", status="failed")
    replica_pair.pg.wait_replayed()
    (on_primary,) = replica_pair.pg.primary.sql(
        "SELECT count(*) FROM jobs_job WHERE status = 'failed'"
    )[0]
    out = StringIO()
    call_command("queue_stats", "--json", stdout=out)
    assert json.loads(out.getvalue())["statuses"]["failed"] == on_primary >= 3
    assert not Job.objects.filter(status="failed").exists()


def test_an_idle_replica_is_current_however_old_its_last_commit(
    replica_alias: str, replica_pair: Cluster, settings: Any
) -> None:
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    replica_pair.pg.wait_replayed()
    time.sleep(1.0)  # longer than the threshold, without a single write to the primary
    state = replicas.check(replica_alias)
    assert (state.state, state.lag_seconds, state.in_rotation) == ("in_rotation", 0.0, True)


def test_a_lagging_replica_leaves_the_rotation_and_comes_back(
    replica_alias: str, replica_pair: Cluster, settings: Any
) -> None:
    settings.REPLICA_MAX_LAG_SECONDS = 1.0
    settings.REPLICA_CHECK_SECONDS = 0.1
    settings.REPLICA_RETRY_SECONDS = 0.2
    with replica_reads():
        assert router.db_for_read(Job) == replica_alias
    replica_pair.pg.pause_replay()
    _insert_job_on_primary(replica_pair, "alpha")  # WAL the replica receives but does not apply

    def left_out() -> bool:
        with replica_reads():
            return router.db_for_read(Job) == "default"

    started = time.monotonic()
    wait_for(left_out, timeout=10, interval=0.05)
    state = replicas.state_of(replica_alias)
    assert state.state == "lagging"
    assert state.lag_seconds is not None
    assert state.lag_seconds > 1.0
    # Not before the threshold: the lag is measured, not guessed.
    assert time.monotonic() - started >= 0.9

    replica_pair.pg.resume_replay()

    def back() -> bool:
        with replica_reads():
            return router.db_for_read(Job) == replica_alias

    wait_for(back, timeout=10, interval=0.05)
    assert replicas.state_of(replica_alias).lag_seconds is not None


def test_a_stopped_replica_is_down_and_reads_go_to_the_primary(
    replica_alias: str, replica_pair: Cluster, settings: Any
) -> None:
    settings.REPLICA_CHECK_SECONDS = 0.0
    settings.REPLICA_RETRY_SECONDS = 60.0
    ApiClient.objects.create(name="only-on-the-test-database")
    with replica_reads():
        assert not ApiClient.objects.filter(name="only-on-the-test-database").exists()
    replica_pair.pg.replica.stop()
    with replica_reads():
        # The check before the read finds it down: the read goes to the primary.
        assert ApiClient.objects.filter(name="only-on-the-test-database").exists()
    state = replicas.state_of(replica_alias)
    assert (state.state, state.in_rotation) == ("down", False)
    assert state.error == "OperationalError"


def test_readyz_reports_a_lagging_replica_without_failing(
    replica_alias: str, replica_pair: Cluster, settings: Any, anonymous: Any
) -> None:
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    forget_readiness()
    healthy = anonymous.get("/readyz").json()["checks"][f"database:{replica_alias}"]
    assert healthy["ok"] is True
    assert (healthy["state"], healthy["lag_seconds"], healthy["required"]) == (
        "in_rotation",
        0.0,
        False,
    )
    replica_pair.pg.pause_replay()
    _insert_job_on_primary(replica_pair, "gamma")
    time.sleep(0.8)
    forget_readiness()  # the first answer is reused for READYZ_CACHE_SECONDS
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    check = response.json()["checks"][f"database:{replica_alias}"]
    assert (check["ok"], check["state"], check["in_rotation"]) == (False, "lagging", False)
    assert check["lag_seconds"] > 0.5


def test_readyz_reports_a_stopped_replica_without_failing(
    replica_alias: str, replica_pair: Cluster, anonymous: Any
) -> None:
    replica_pair.pg.replica.stop()
    forget_readiness()
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    check = response.json()["checks"][f"database:{replica_alias}"]
    assert (check["ok"], check["state"], check["required"]) == (False, "down", False)


def test_the_admin_list_reads_the_replica_until_the_user_writes(
    replica_pair: Cluster, client: Any
) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    on_replica = _insert_job_on_primary(replica_pair, "alpha")
    replica_pair.pg.wait_replayed()

    page = client.get("/admin/jobs/job/")
    assert page.status_code == 200
    assert on_replica in page.content.decode()  # only the replica has that job

    # Any POST through the admin pins the user to the primary for a while.
    client.post("/admin/jobs/job/", {"action": "cancel_selected", "_selected_action": []})
    page = client.get("/admin/jobs/job/")
    assert page.status_code == 200
    assert on_replica not in page.content.decode()
