"""The wake-up relay: PostgreSQL notifications in, broker wake-ups out.

A transaction that queues jobs also issues ``NOTIFY conveyor_wakeup`` (in the same
statement as the INSERT for a submission). PostgreSQL delivers the notification only if and
when the transaction commits, so the relay never wakes a worker for a row it cannot see, and
the web process never talks to the broker at all: a submission costs one statement.

The relay runs as a thread in the scheduler process (``celery worker --relay``, see
config/celery_app.py). It gathers notifications for a few milliseconds, then publishes wake-ups
per queue (``apps.jobs.dispatch.publish_wakeups``). Whenever it (re)connects it wakes every queue
that has queued jobs, since notifications sent while it was away are gone; the maintenance loop's
stalled-queue check covers the rest.

Wake-ups still waiting in the broker count: a message not yet delivered will start a drain that
begins after the notified commit, so it claims the new jobs as surely as a fresh one would. The
relay asks the broker how many wait (one round trip, ~0.1 ms) and publishes only the shortfall; a
publish through Celery costs ~0.8 ms of the scheduler's CPU and each message another task run in
the pool, which under a steady stream of submissions was a fifth of all the CPU an accepted job
cost (docs/benchmarks.md). When the broker cannot say, every wanted wake-up is published.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from django.db.models import Count
from kombu import Connection

from apps.jobs.dispatch import (
    CHANNEL,
    parse_payload,
    publish_wakeups,
    uses_relay,
    wakeups_for,
)
from apps.jobs.models import Job, JobStatus

logger = logging.getLogger("conveyor.relay")


def _connection_params(using: str = "default") -> dict[str, Any]:
    params = connections[using].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    return params


class BrokerBacklog:
    """How many messages wait undelivered in a broker queue, on a connection kept open.

    Messages a worker has already taken (prefetched, running) are not counted, and neither is
    anything the broker could not be asked about: the count errs low, so a wake-up that may be
    needed is published rather than skipped.
    """

    def __init__(self) -> None:
        self._connection: Connection | None = None
        self._channel: Any = None

    def waiting(self, queue: str) -> int:
        try:
            if self._channel is None:
                from celery import current_app

                self._connection = current_app.connection_for_write()
                self._connection.ensure_connection(max_retries=1, timeout=2)
                self._channel = self._connection.channel()
            size = getattr(self._channel, "_size", None)
            if size is not None:  # kombu's virtual transports: Redis, filesystem
                return max(0, int(size(queue)))
            return max(0, int(self._channel.queue_declare(queue=queue, passive=True).message_count))
        except Exception:
            logger.debug("could not count the wake-ups waiting in %s", queue, exc_info=True)
            self.close()
            return 0

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:
                logger.debug("closing the broker connection failed", exc_info=True)


def missing_wakeups(wanted: dict[str, int], backlog: BrokerBacklog) -> dict[str, int]:
    """Of the wake-ups ``wanted`` per queue, those not already waiting in the broker."""
    missing = {}
    for queue, count in wanted.items():
        short = count - backlog.waiting(queue)
        if short > 0:
            missing[queue] = short
    return missing


class WakeupRelay:
    def __init__(self, window: float) -> None:
        self.window = window
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-relay", daemon=True)
        self._backlog = BrokerBacklog()
        self.published = 0
        self.skipped = 0

    def start(self) -> WakeupRelay:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._backlog.close()

    def _run(self) -> None:
        # One traceback per outage, then one line per retry, retries backing off to 10 s: a
        # database that stays down must not fill the log with a traceback a second.
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(**_connection_params(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    logger.info("wake-up relay listening on %s", CHANNEL)
                    failures = 0
                    self._catch_up()
                    self._relay(conn)
            except Exception as exc:
                failures += 1
                delay = min(10.0, 2.0 ** (failures - 1))
                if failures == 1:
                    logger.exception("wake-up relay lost its connection; reconnecting")
                else:
                    logger.warning(
                        "wake-up relay still without a connection (%s: %s); retry in %.0f s",
                        type(exc).__name__,
                        str(exc).strip()[:200],
                        delay,
                    )
                self._stop.wait(delay)

    def _catch_up(self) -> None:
        """Wake every queue with queued jobs: notifications sent while away are lost."""
        waiting = dict(
            Job.objects.filter(status=JobStatus.QUEUED)
            .values_list("queue")
            .annotate(n=Count("pk"))
            .order_by()
        )
        connections.close_all()
        if waiting:
            self.published += publish_wakeups({q: wakeups_for(n) for q, n in waiting.items()})

    def _relay(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            pending: Counter[str] = Counter()
            for notify in conn.notifies(timeout=0.5, stop_after=1):
                pending.update(parse_payload(notify.payload))
            if not pending:
                continue
            # Gather what arrives within the window and publish it together.
            deadline = time.monotonic() + self.window
            while (remaining := deadline - time.monotonic()) > 0:
                for notify in conn.notifies(timeout=remaining):
                    pending.update(parse_payload(notify.payload))
            wanted = {q: wakeups_for(n) for q, n in pending.items()}
            missing = missing_wakeups(wanted, self._backlog)
            self.skipped += sum(wanted.values()) - sum(missing.values())
            if missing:
                self.published += publish_wakeups(missing)


def start_relay() -> WakeupRelay | None:
    """Start the relay, or explain once why none is needed: with ``WAKEUP_RELAY=false`` the web
    process publishes wake-ups itself after each commit (apps/jobs/dispatch.py), so there is
    nothing to listen to."""
    if not uses_relay():
        logger.info(
            "wake-up relay not started: WAKEUP_RELAY=false; wake-ups are published after each "
            "commit instead"
        )
        return None
    return WakeupRelay(window=settings.RELAY_WINDOW_SECONDS).start()
