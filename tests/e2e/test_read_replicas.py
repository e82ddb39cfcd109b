"""The read path against a real primary and streaming replica, through a real web server.

gunicorn runs with DATABASE_URL and DATABASE_REPLICA_URLS pointing at the throwaway cluster
(tests/support/pgcluster.py). Pausing the replica's replay (``pg_wal_replay_pause()``) makes
the two servers disagree, so each answer tells which server gave it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from apps.core.fastcache import fast_cache
from apps.core.ids import uuid7_with_time
from apps.core.replicas import pin_key
from apps.jobs.status_cache import job_cache_key
from tests.support.processes import wait_for
from tests.support.replica_fixtures import Cluster, ClusterClient

pytestmark = [pytest.mark.e2e]

ECHO = {"type": "diagnostics.echo", "input": {"message": "replica"}}


class Api:
    def __init__(self, base: str, client: ClusterClient) -> None:
        self.base = base
        self.client = client

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.client.api_key}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                raw = response.read()
                return response.status, dict(response.headers), json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, dict(error.headers), json.loads(raw) if raw else None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, _, payload = self.call(method, path, body)
        assert status < 300, (status, payload)
        return payload

    def job(self, job_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/api/v1/jobs/{job_id}")

    def listed(self, query: str = "") -> list[str]:
        return [job["id"] for job in self.ok("GET", f"/api/v1/jobs?{query}")["results"]]

    def forget_writes(self) -> None:
        """As if the read-your-writes window had passed (it is seconds; not worth waiting)."""
        fast_cache().delete_many([pin_key(f"client:{self.client.id}")])

    def forget_cached(self, job_id: str) -> None:
        """Drop the job's status-cache entry, so that the next GET reads a database."""
        fast_cache().delete_many([job_cache_key(self.client.id, job_id)])


def insert_job(cluster: Cluster, client: ClusterClient) -> str:
    """A job written straight into the primary: nobody's read-your-writes pin is set."""
    job_id, created = uuid7_with_time()
    cluster.pg.primary.sql(
        "INSERT INTO jobs_job (id, client_id, type, status, input, priority, queue, attempts,"
        " max_attempts, timeout_seconds, webhook_events, metadata, created_at, cancel_requested,"
        " version, request_id, task_id, worker) VALUES (%s, %s, 'diagnostics.echo', 'queued',"
        " '{}', 1, 'default', 0, 3, 300, '[]', '{}', %s, false, 1, '', '', '')",
        [job_id, client.id, created],
    )
    return str(job_id)


def status_on(server: Any, job_id: str) -> str:
    return str(server.sql("SELECT status FROM jobs_job WHERE id = %s", [job_id])[0][0])


def test_gets_read_the_replica_and_a_writer_reads_the_primary(
    replica_pair: Cluster, cluster_web: Any
) -> None:
    _, base = cluster_web(REPLICA_MAX_LAG_SECONDS="120")
    alpha = Api(base, replica_pair.clients["alpha"])
    job_id = alpha.ok("POST", "/api/v1/jobs", ECHO)["id"]
    replica_pair.pg.wait_replayed()
    replica_pair.pg.pause_replay()

    assert alpha.ok("POST", f"/api/v1/jobs/{job_id}/cancel")["status"] == "canceled"
    primary, replica = replica_pair.pg.primary, replica_pair.pg.replica
    assert (status_on(primary, job_id), status_on(replica, job_id)) == ("canceled", "queued")

    # Read-your-writes: alpha just wrote, so its reads go to the primary while replay is paused.
    alpha.forget_cached(job_id)
    assert alpha.job(job_id)["status"] == "canceled"
    assert alpha.listed("status=canceled") == [job_id]

    # Once alpha's window has passed, the same reads go to the replica, and show its past.
    alpha.forget_writes()
    alpha.forget_cached(job_id)
    assert alpha.job(job_id)["status"] == "queued"
    assert job_id not in alpha.listed("status=canceled")
    assert job_id in alpha.listed("status=queued")

    # The cancel's write-through entry is newer than anything a replica read can cache.
    replica_pair.pg.resume_replay()
    replica_pair.pg.wait_replayed()
    alpha.forget_cached(job_id)
    assert alpha.job(job_id)["status"] == "canceled"


def test_read_your_writes_holds_while_replay_is_paused(
    replica_pair: Cluster, cluster_web: Any
) -> None:
    _, base = cluster_web(REPLICA_MAX_LAG_SECONDS="120")
    alpha = Api(base, replica_pair.clients["alpha"])
    beta = Api(base, replica_pair.clients["beta"])
    beta_before = beta.ok("POST", "/api/v1/jobs", ECHO)["id"]
    replica_pair.pg.wait_replayed()
    beta.forget_writes()
    replica_pair.pg.pause_replay()

    # The submitting client sees its new job at once: first poll (not cached yet) and list.
    job_id = alpha.ok("POST", "/api/v1/jobs", ECHO)["id"]
    assert replica_pair.pg.replica.sql("SELECT count(*) FROM jobs_job WHERE id = %s", [job_id]) == [
        (0,)
    ]
    assert alpha.job(job_id)["status"] == "queued"
    assert alpha.listed()[0] == job_id
    for _ in range(5):
        assert alpha.job(job_id)["id"] == job_id

    # Another client's reads are not pinned by alpha's write: beta's list comes from the replica,
    # which does not have beta's job written on the primary a moment ago.
    beta_new = insert_job(replica_pair, replica_pair.clients["beta"])
    listed = beta.listed()
    assert beta_before in listed
    assert beta_new not in listed
    # A job the replica does not know is looked up on the primary before a 404.
    assert beta.job(beta_new)["id"] == beta_new


def test_reads_succeed_through_the_primary_when_the_replica_is_stopped(
    replica_pair: Cluster, cluster_web: Any
) -> None:
    _, base = cluster_web(REPLICA_RETRY_SECONDS="0.5", REPLICA_CHECK_SECONDS="0.2")
    gamma = Api(base, replica_pair.clients["gamma"])
    job_id = gamma.ok("POST", "/api/v1/jobs", ECHO)["id"]
    replica_pair.pg.wait_replayed()
    gamma.forget_writes()
    assert job_id in gamma.listed()  # the web worker now holds a connection to the replica

    replica_pair.pg.replica.stop()
    # The open connection breaks under the next read: answered again from the primary.
    assert job_id in gamma.listed()
    gamma.forget_cached(job_id)
    assert gamma.job(job_id)["id"] == job_id
    for _ in range(3):
        assert job_id in gamma.listed()

    status, _, ready = gamma.call("GET", "/readyz")
    assert status == 200
    assert ready["status"] == "ready"
    check = ready["checks"]["database:replica0"]
    assert (check["ok"], check["state"], check["required"]) == (False, "down", False)

    replica_pair.pg.replica.start()
    wait_for(
        lambda: gamma.call("GET", "/readyz")[2]["checks"]["database:replica0"]["ok"], timeout=20
    )


def test_a_lagging_replica_is_taken_out_of_rotation(
    replica_pair: Cluster, cluster_web: Any
) -> None:
    _, base = cluster_web(
        REPLICA_MAX_LAG_SECONDS="1", REPLICA_CHECK_SECONDS="0.2", REPLICA_RETRY_SECONDS="0.5"
    )
    beta = Api(base, replica_pair.clients["beta"])
    beta.listed()  # in rotation, and checked
    replica_pair.pg.pause_replay()
    new = insert_job(replica_pair, replica_pair.clients["beta"])
    assert new not in beta.listed()  # the replica, a moment behind

    # Replay stays paused: beta can only ever see the new job once its reads go to the primary.
    wait_for(lambda: new in beta.listed(), timeout=10, interval=0.1)
    check = beta.call("GET", "/readyz")[2]["checks"]["database:replica0"]
    assert (check["ok"], check["state"]) == (False, "lagging")
    assert check["lag_seconds"] > 1

    replica_pair.pg.resume_replay()
    wait_for(
        lambda: beta.call("GET", "/readyz")[2]["checks"]["database:replica0"]["ok"], timeout=20
    )
