"""Long-polls on a job (API.md, "Waiting without polling"): ``Prefer: wait=N`` on submission,
``GET /jobs/{id}?wait=N`` with ``If-None-Match``.

The view does everything a plain request does (authentication, rate limit, tenancy, the first
read) and, when the answer is not there yet, ``begin`` registers a waiter with the process's
change feed (apps/core/changes.py), marks the job's status-cache entry as watched and reads it
again, in one Redis round trip that also counts the client's waiters (``WAIT_MAX_PER_CLIENT``,
429) — the process's own bound (``WAIT_MAX_PER_PROCESS``, 503) is checked first. Then it returns
a DeferredResponse (apps/core/deferred.py): the wait itself runs in the event loop, woken by the
status cache's write-through of the job's next version, which carries the new entry, so a
wake-up answers without another read. A waiter re-reads on its own every WAIT_RECHECK_SECONDS
(a lost message costs at most that), and answers with what it has at its deadline.

A state is ``(version, body)``: the job's version (its ETag) and the JSON the API answers with.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import orjson
from django.conf import settings
from django.http import HttpResponse

from apps.core.changes import Waiter, change_feed
from apps.core.deferred import DeferredResponse, on_sync_thread
from apps.core.errors import NotFound, RateLimited, ServiceUnavailable, ValidationFailed
from apps.core.fastcache import fast_cache, key
from apps.jobs.models import TERMINAL_STATUSES
from apps.jobs.status_cache import decode

logger = logging.getLogger(__name__)

WAIT_MIN_SECONDS, WAIT_MAX_SECONDS = 1, 60
WAIT_SCHEMA = {"type": "integer", "minimum": WAIT_MIN_SECONDS, "maximum": WAIT_MAX_SECONDS}
_WAIT_RULE = f"Must be an integer from {WAIT_MIN_SECONDS} to {WAIT_MAX_SECONDS} (seconds)."

State = tuple[int, bytes]


def _seconds(raw: str, name: str) -> int:
    raw = raw.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 2:
        seconds = int(raw)
        if WAIT_MIN_SECONDS <= seconds <= WAIT_MAX_SECONDS:
            return seconds
    raise ValidationFailed("The wait is not valid.", details={name: [_WAIT_RULE]})


def parse_wait_query(params: object) -> int | None:
    """``?wait=N``: the seconds to wait, None when absent, ValidationFailed when not 1-60."""
    values = params.getlist("wait")  # type: ignore[attr-defined]
    if not values:
        return None
    if len(values) > 1:
        raise ValidationFailed("The wait is not valid.", details={"wait": ["Give it once."]})
    return _seconds(values[0], "wait")


def parse_prefer_wait(header: str | None) -> int | None:
    """The ``wait`` preference of a Prefer header (RFC 7240: preferences separated by commas,
    parameters after ';', the header possibly repeated), None when absent. Other preferences
    are ignored, as the RFC says; a wait that is not 1-60, or two of them, is a 400."""
    if not header:
        return None
    found = [
        value
        for preference in header.split(",")
        for name, _, value in [preference.split(";", 1)[0].partition("=")]
        if name.strip().lower() == "wait"
    ]
    if not found:
        return None
    if len(found) > 1:
        raise ValidationFailed("The wait is not valid.", details={"Prefer": ["One wait only."]})
    return _seconds(found[0].strip().strip('"'), "Prefer")


def is_terminal(state: State) -> bool:
    return orjson.loads(state[1]).get("status") in TERMINAL_STATUSES


def _waiters_key(client_id: int) -> str:
    return key(f"waiters:{client_id}")


@dataclass
class JobWait:
    """What one long-poll waits for, and how it reads and answers (given by the view)."""

    client_id: int
    cache_key: str  # the job's status-cache entry (apps/jobs/status_cache.py)
    seconds: int
    # A state from a status-cache entry (None: the entry is missing, read the database). Sync.
    read: Callable[[bytes | None], State]
    # Whether read(entry) would touch the database (then it runs in a thread).
    reads_db: Callable[[bytes], bool]
    done: Callable[[State], bool]
    answer: Callable[[State], HttpResponse]  # once done
    timeout: Callable[[State], HttpResponse]  # at the deadline, with the last state


def begin(wait: JobWait, state: State) -> HttpResponse:
    """In the view: answer at once if ``wait`` is already done, else a DeferredResponse that
    waits in the event loop. ServiceUnavailable (503) when this process holds
    WAIT_MAX_PER_PROCESS waiters, RateLimited (429) when the client has WAIT_MAX_PER_CLIENT."""
    feed = change_feed()
    waiter = Waiter(wait.cache_key, time.time() + wait.seconds)
    feed.add(waiter)
    try:
        watch = fast_cache().watch(
            wait.cache_key,
            _waiters_key(wait.client_id),
            waiter.id,
            waiter.deadline,
            settings.WAIT_MAX_PER_CLIENT,
        )
    except Exception:
        feed.remove(waiter)
        logger.warning("could not begin a wait", exc_info=True)
        raise ServiceUnavailable(retry_after=1) from None
    if not watch.admitted:
        feed.remove(waiter)
        raise RateLimited(
            "Too many waiting requests for this client.",
            details={"max_waiters_per_client": settings.WAIT_MAX_PER_CLIENT},
            retry_after=1,
        )
    try:
        # The entry as of the watch: a change committed before it is here, any later one will
        # be published to the waiter.
        if watch.value is not None and decode(watch.value)[0] > state[0]:
            state = wait.read(watch.value)
        if wait.done(state):
            _end(wait, waiter)
            return wait.answer(state)
    except BaseException:
        _end(wait, waiter)
        raise
    return DeferredResponse(partial(_wait, wait, waiter, state))


async def _wait(wait: JobWait, waiter: Waiter, state: State) -> HttpResponse:
    feed = change_feed()
    interval = settings.WAIT_RECHECK_SECONDS if feed.live else settings.WAIT_FALLBACK_POLL_SECONDS
    try:
        while True:
            remaining = waiter.deadline - time.time()
            if remaining <= 0:
                return wait.timeout(state)
            # Jittered, so that the waiters of one moment do not all re-read together.
            woken, value = await waiter.wait(min(remaining, interval * random.uniform(0.8, 1.2)))
            if value is not None:
                if decode(value)[0] <= state[0]:
                    continue  # a message about a version already seen
                if wait.reads_db(value):
                    state = await on_sync_thread(wait.read)(value)
                else:
                    state = wait.read(value)
            elif woken or time.time() < waiter.deadline - 0.001:
                # A re-check: the feed reconnected (messages may be lost), the server is
                # stopping, or the interval passed.
                state = await on_sync_thread(_reread)(wait)
            if wait.done(state):
                return wait.answer(state)
            if feed.stopping:  # the server is shutting down: what it has, now
                return wait.timeout(state)
    except NotFound:  # purged while waited on: the client learns it on its next read
        return wait.timeout(state)
    except Exception:
        logger.warning("a wait ended early", exc_info=True)
        return wait.timeout(state)
    finally:
        _end(wait, waiter, background=True)


def _reread(wait: JobWait) -> State:
    try:
        entry = fast_cache().get_many([wait.cache_key])[0]
    except Exception:  # the cache is away: the database answers
        entry = None
    return wait.read(entry)


def _end(wait: JobWait, waiter: Waiter, *, background: bool = False) -> None:
    change_feed().remove(waiter)
    if background:
        # Never awaited: the request may be cancelled (its client left) and this must still run.
        asyncio.get_running_loop().run_in_executor(None, _unwatch, wait.client_id, waiter.id)
    else:
        _unwatch(wait.client_id, waiter.id)


def _unwatch(client_id: int, waiter_id: str) -> None:
    try:
        fast_cache().unwatch(_waiters_key(client_id), waiter_id)
    except Exception:  # it expires at its deadline anyway
        logger.warning("could not end a wait", exc_info=True)
