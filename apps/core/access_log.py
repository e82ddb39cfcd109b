"""The access log: one ``conveyor.access`` line per request, written off the request path.

A log line built and written in the middle of a request costs far more than the same line in a
loop (measured on ``GET /jobs/{id}``: ~45 µs against ~10 µs, the logging code being cold in the
CPU's caches by then): about a sixth of the cheapest request's CPU. So the request only appends a
tuple to a queue, and a thread of the worker process turns the queue into ordinary log records
(``logging.getLogger("conveyor.access")``, whatever handlers and formatters LOGGING gives it)
every ``INTERVAL`` seconds, in a batch. Lines keep the time of their request.

Bounded: at most ``MAX_PENDING`` lines wait; beyond that the oldest are dropped and counted (a
warning says how many). Lines still waiting when the process exits normally are written by an
``atexit`` hook; a process killed outright loses at most ``INTERVAL`` seconds of lines.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from typing import Any

LOGGER = "conveyor.access"
INTERVAL = 0.05
MAX_PENDING = 20_000

logger = logging.getLogger(LOGGER)


class AccessLog:
    def __init__(self, interval: float = INTERVAL, max_pending: int = MAX_PENDING) -> None:
        self.interval = interval
        self._pending: deque[tuple[Any, ...]] = deque()
        self._max_pending = max_pending
        self._dropped = 0
        self._lock = threading.Lock()  # one writer at a time (the thread, flush(), atexit)
        self._start_lock = threading.Lock()
        self._pid: int | None = None
        # A child forked while another thread held a lock would inherit it locked for ever, and
        # would write the parent's queued lines a second time.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._pending = deque()
        self._dropped = 0
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._pid = None

    def add(
        self,
        method: str,
        route: str,
        status: int,
        duration_ms: float,
        client_id: Any,
        request_id: str | None,
    ) -> None:
        """Queue one request's line (cheap: no formatting, no I/O)."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self._dropped += 1
        self._pending.append(
            (time.time(), method, route, status, duration_ms, client_id, request_id)
        )
        if self._pid != os.getpid():
            self._start()

    def _start(self) -> None:
        # Per process: a forked process has the queue but not the thread. With threaded
        # workers, the first requests may race here; one of them starts it.
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._run, name="conveyor-access-log", daemon=True).start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # a broken handler must not stop the writer
                logging.getLogger(__name__).exception("writing access log lines failed")

    def flush(self) -> None:
        """Write every queued line now."""
        with self._lock:
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                logger.warning("access log: %d lines dropped (the writer fell behind)", dropped)
            pending = self._pending
            while pending:
                try:
                    created, method, route, status, ms, client_id, request_id = pending.popleft()
                except IndexError:
                    break
                record = logger.makeRecord(
                    LOGGER,
                    logging.INFO,
                    "",
                    0,
                    f"{method} {route} {status} {ms}ms",
                    (),
                    None,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": ms,
                        "client_id": client_id,
                        "request_id": request_id,
                    },
                )
                record.created = created
                record.msecs = (created - int(created)) * 1000
                logger.handle(record)


access_log = AccessLog()
