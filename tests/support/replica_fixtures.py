"""Fixtures for the replica tests (loaded by tests/conftest.py as a pytest plugin).

``pg_cluster`` is one throwaway primary + streaming replica for the session (2-3 s to make),
migrated, with API clients created through ``create_client``; each test that uses it gets it
running, streaming and caught up (``replica_pair``). ``replica_alias`` attaches that replica to
this test process as the database alias ``replica0``, as DATABASE_REPLICA_URLS would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.pgcluster import PgCluster, postgres_bin
from tests.support.prerequisites import missing
from tests.support.processes import ROOT, ManagedProcess, service_env, start_web


@dataclass
class ClusterClient:
    name: str
    id: int
    api_key: str


@dataclass
class Cluster:
    pg: PgCluster
    clients: dict[str, ClusterClient] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a process whose primary and replica are this cluster's."""
        return service_env(
            DATABASE_URL=self.pg.primary.url(),
            DATABASE_REPLICA_URLS=self.pg.replica.url(),
            **overrides,
        )

    def manage(self, *argv: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    if postgres_bin() is None:
        missing("PostgreSQL server binaries are not installed (set PG_BIN)")
    with PgCluster() as pg:
        cluster = Cluster(pg)
        cluster.manage("migrate", "--noinput", "-v", "0")
        for name in ("alpha", "beta", "gamma"):
            created = json.loads(cluster.manage("create_client", name))
            (client_id,) = pg.primary.sql(
                "SELECT id FROM clients_apiclient WHERE name = %s", [name]
            )[0]
            cluster.clients[name] = ClusterClient(name, client_id, created["api_key"])
        pg.wait_replayed()
        yield cluster


@pytest.fixture
def replica_pair(pg_cluster: Cluster) -> Cluster:
    """The session's cluster, running, streaming and caught up, whatever the last test did; this
    process has forgotten what it knew of the replica's health."""
    from apps.core import replicas

    pg_cluster.pg.ensure_healthy()
    replicas.forget_states()
    return pg_cluster


REPLICA_ALIAS = "replica0"


@pytest.fixture(scope="module")
def replica_alias(pg_cluster: Cluster, django_db_setup: None) -> Iterator[str]:
    """This process reads ``replica0``, the cluster's replica, as DATABASE_REPLICA_URLS would
    configure it (its primary stays the test database, so what a read returns tells which
    server answered it).

    Module-scoped so that the alias exists before pytest-django sets up each test and until it
    has torn it down (but after the test database exists: the test-database set-up would turn
    a mirror alias into a second name for it); the module's tests must be marked
    ``django_db(transaction=True, databases=["default", REPLICA_ALIAS])``.
    """
    from django.conf import settings as django_settings
    from django.db import connections

    from apps.core import replicas

    replica = pg_cluster.pg.replica
    config = {
        **django_settings.DATABASES["default"],
        "NAME": "conveyor",
        "HOST": "127.0.0.1",
        "PORT": replica.port,
        "USER": "postgres",
        "PASSWORD": "",
        "TEST": {"MIRROR": "default"},
    }
    config["OPTIONS"] = {**config["OPTIONS"], "connect_timeout": 2}
    # connections.settings is settings.DATABASES: one dict, read by both.
    django_settings.DATABASES[REPLICA_ALIAS] = config
    replicas.forget_states()
    try:
        yield REPLICA_ALIAS
    finally:
        connections[REPLICA_ALIAS].close()
        del django_settings.DATABASES[REPLICA_ALIAS]
        if hasattr(connections._connections, REPLICA_ALIAS):
            delattr(connections._connections, REPLICA_ALIAS)
        replicas.forget_states()


@pytest.fixture
def cluster_web(
    replica_pair: Cluster, tmp_path: Any
) -> Iterator[Callable[..., tuple[ManagedProcess, str]]]:
    """``cluster_web(**env)``: gunicorn (one worker) on the cluster's primary and replica."""
    started: list[ManagedProcess] = []

    def start(**env: str) -> tuple[ManagedProcess, str]:
        process, base = start_web(
            tmp_path,
            workers=1,
            DATABASE_URL=replica_pair.pg.primary.url(),
            DATABASE_REPLICA_URLS=replica_pair.pg.replica.url(),
            **env,
        )
        started.append(process)
        return process, base

    yield start
    for process in started:
        process.stop()
