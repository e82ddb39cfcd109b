"""The wake-up relay publishes only the wake-ups that are not already waiting in the broker: a
message not yet delivered starts a drain after the notified commit, so it covers the new jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from celery import current_app
from kombu import Connection

from apps.jobs.dispatch import CHANNEL, publish_wakeups
from apps.jobs.relay import BrokerBacklog, WakeupRelay, _connection_params, missing_wakeups


@pytest.fixture
def backlog() -> Iterator[BrokerBacklog]:
    counter = BrokerBacklog()
    yield counter
    counter.close()


def test_waiting_wakeups_are_counted_and_only_the_shortfall_is_wanted(
    fresh_queue: Callable[[], str], backlog: BrokerBacklog
) -> None:
    queue = fresh_queue()
    assert backlog.waiting(queue) == 0  # never declared: nothing waits
    assert missing_wakeups({queue: 2}, backlog) == {queue: 2}
    assert publish_wakeups({queue: 2}) == 2
    assert backlog.waiting(queue) == 2
    assert missing_wakeups({queue: 3}, backlog) == {queue: 1}
    assert missing_wakeups({queue: 2}, backlog) == {}


def test_a_broker_that_cannot_be_asked_counts_nothing_so_every_wakeup_is_published(
    fresh_queue: Callable[[], str], backlog: BrokerBacklog
) -> None:
    queue = fresh_queue()
    publish_wakeups({queue: 2})
    # A broker nobody listens on: the count errs low, never high.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            current_app,
            "connection_for_write",
            lambda: Connection("redis://127.0.0.1:1/0", connect_timeout=0.2),
        )
        assert missing_wakeups({queue: 2}, backlog) == {queue: 2}
        backlog.close()
    assert missing_wakeups({queue: 2}, backlog) == {}  # asked again once it answers


def _notify(payload: str) -> None:
    with psycopg.connect(**_connection_params(), autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])


def _wait_for(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.mark.usefixtures("transactional_db")
def test_the_relay_publishes_no_second_wakeup_while_one_waits_undelivered(
    fresh_queue: Callable[[], str], backlog: BrokerBacklog, settings: Any
) -> None:
    # One worker wanted per queue whatever the jobs, so that what the relay wants is exact.
    settings.WORKER_WAKEUP_FANOUT = 1
    queue, probe = fresh_queue(), fresh_queue()
    relay = WakeupRelay(window=0.002).start()
    try:
        # Until the relay listens, notifications are lost: repeat the first until it lands.
        def first_landed() -> bool:
            _notify(f"{queue}:1")
            return backlog.waiting(queue) > 0

        _wait_for(first_landed, "the relay published a first wake-up")
        _wait_for(lambda: relay.published > 0, "the relay counted it")
        assert backlog.waiting(queue) == 1
        published = relay.published
        for _ in range(5):
            _notify(f"{queue}:1")
        # Notifications are handled in order: once the probe's wake-up is out, so are those.
        _notify(f"{probe}:1")
        _wait_for(lambda: backlog.waiting(probe) == 1, "the probe's wake-up")
        assert backlog.waiting(queue) == 1
        assert relay.published == published + 1  # the probe's only
        assert relay.skipped >= 1

        # Once that wake-up is delivered (taken off the queue), the next job needs a new one.
        with current_app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)
        _notify(f"{queue}:1")
        _wait_for(lambda: backlog.waiting(queue) == 1, "a new wake-up for the empty queue")
    finally:
        relay.stop()
