"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.test import TransactionTestCase
from rest_framework.test import APIClient

from apps.clients.services import client_create
from tests.support.broker import empty_test_broker
from tests.support.tenants import Tenant

# The throwaway primary + replica fixtures (pg_cluster, replica_pair, replica_alias, cluster_web).
pytest_plugins = ["tests.support.replica_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    from tests.settings import SHARED_SERVICES

    workers = getattr(config.option, "numprocesses", None)
    if workers and SHARED_SERVICES:
        raise pytest.UsageError(
            f"{' and '.join(SHARED_SERVICES)} set: every xdist worker would share that Redis "
            "database or broker and empty the others' queues. Unset it for a parallel run (each "
            "worker gets its own Redis database, tests/settings.py), or run with -n 0."
        )


# A transactional test ends with a flush: one TRUNCATE of every table. A module's processes that
# outlive the test (a worker claiming, a scheduler's maintenance step) lock several tables in one
# statement, so the TRUNCATE can deadlock with one of them and PostgreSQL aborts one side; their
# side retries by itself, the flush is tried again here (at most three times, deadlocks only).
_flush = TransactionTestCase._fixture_teardown


def _flush_retrying_deadlocks(self: TransactionTestCase) -> None:
    for attempt in range(3):
        try:
            _flush(self)
            return
        except CommandError as error:
            if attempt == 2 or "deadlock detected" not in str(error.__cause__):
                raise


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks  # type: ignore[method-assign]


# The longest files first: pytest-xdist hands out whole files (--dist loadfile) in collection
# order, so a long end-to-end file collected last would run alone after the others are done.
_FIRST = ("tests/e2e/test_schema_fuzz.py", "tests/e2e/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the usual order

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, prefix in enumerate(_FIRST) if path.startswith(prefix)), len(_FIRST))

    items.sort(key=rank)  # stable: the order within each rank stays


@pytest.fixture
def make_tenant(db: None) -> Callable[..., Tenant]:
    counter = iter(range(1_000_000))

    def make(name: str | None = None, *, unlimited: bool = False) -> Tenant:
        client, key = client_create(name=name or f"tenant-{next(counter)}", unlimited=unlimited)
        return Tenant(client, key)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def other_tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("globex")


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    """Each test starts with an empty cache (only this suite's key prefix is touched): Django's
    cache and the fast cache's raw keys (auth entries, job status, rate counters, pins)."""
    from django.conf import settings
    from django.core.cache import cache

    from apps.core.fastcache import RedisFastCache, fast_cache

    cache.delete_pattern("*")
    fast = fast_cache()
    if isinstance(fast, RedisFastCache):
        stale = list(fast.client.scan_iter(match=f"{settings.CACHE_KEY_PREFIX}:*", count=1000))
        for start in range(0, len(stale), 1000):
            fast.client.delete(*stale[start : start + 1000])
    return


@pytest.fixture(scope="session", autouse=True)
def _empty_broker_at_start() -> None:
    empty_test_broker()


@pytest.fixture(scope="module")
def worker_process(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One real Celery worker (prefork, 2 processes) on the default queue, for one module.

    Module-scoped, so that no worker is consuming while tests of other modules publish
    messages for rows they are about to roll back or truncate.
    """
    from tests.support.processes import start_worker

    empty_test_broker()
    with django_db_blocker.unblock():
        process = start_worker(tmp_path_factory.mktemp("worker"), queues="default")
    yield process
    process.stop()


@pytest.fixture
def live_worker(transactional_db: None, worker_process: Any) -> Any:
    """A test that needs a real worker: committed data (transactional_db) and the worker."""
    return worker_process


class _StatementCounter:
    def __init__(self, limit: int) -> None:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        self.limit = limit
        self.context = CaptureQueriesContext(connection)

    def __enter__(self) -> _StatementCounter:
        self.context.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.context.__exit__(*exc)
        if exc[0] is None:
            statements = self.statements
            assert len(statements) <= self.limit, (
                f"{len(statements)} statements > {self.limit}:\n"
                + "\n".join(sql[:300] for sql in statements)
            )

    @property
    def statements(self) -> list[str]:
        # Savepoints are an artefact of the test's wrapping transaction, not of the code.
        return [
            q["sql"]
            for q in self.context.captured_queries
            if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
        ]


@pytest.fixture
def max_statements() -> Callable[[int], _StatementCounter]:
    """``with max_statements(2): ...`` fails when the block runs more SQL statements."""
    return _StatementCounter


class WakeupListener:
    """LISTENs, on its own connection, to the wake-up notifications the relay would get."""

    def __init__(self) -> None:
        import psycopg

        from apps.jobs.dispatch import CHANNEL
        from apps.jobs.relay import _connection_params

        self.conn = psycopg.connect(**_connection_params(), autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def received(self, timeout: float = 0.5) -> Counter[str]:
        """Wake-ups per queue notified within ``timeout`` seconds."""
        from apps.jobs.dispatch import parse_payload

        counts: Counter[str] = Counter()
        for notify in self.conn.notifies(timeout=timeout):
            counts.update(parse_payload(notify.payload))
        return counts


@pytest.fixture
def wakeups(transactional_db: None) -> Iterator[WakeupListener]:
    listener = WakeupListener()
    yield listener
    listener.conn.close()


def delete_broker_queue(name: str) -> None:
    from celery import current_app

    with current_app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            channel.queue_delete(name)
        except Exception:  # noqa: S110 - never declared: nothing to delete
            pass
        finally:
            channel.close()


@pytest.fixture
def fresh_queue() -> Iterator[Callable[[], str]]:
    """Unique broker queue names for a test, deleted afterwards (RabbitMQ keeps queues)."""
    import uuid

    names: list[str] = []

    def make() -> str:
        names.append(f"test-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        delete_broker_queue(name)


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A real webhook receiver on 127.0.0.1 (tests/support/receiver.py)."""
    from tests.support.receiver import running_receiver

    with running_receiver() as started:
        yield started
