"""Read replicas: which reads may use one, and which replicas are fit to serve them.

Reads go to the primary unless the code running them has said otherwise. A *read scope* (a
context variable, so it is per thread and per request) starts closed; the API's GET views, the
admin's list pages and ``queue_stats`` open it (``allow_replica_reads``) once they know that the
caller has not written recently (read-your-writes, see ``pin``). Services, tasks and workers
never open it: they read, decide and write, and a replica could hand them a state the primary
has already left. The router (config/db_router.py) asks ``read_alias`` for every read.

A replica is used only while it is *in rotation*. Each process checks a replica at most every
``REPLICA_CHECK_SECONDS``, inline, on the read that finds the check due (one small query on the
connection the read would use anyway): a replica that refuses connections, is not a standby, or
lags more than ``REPLICA_MAX_LAG_SECONDS`` is left out for ``REPLICA_RETRY_SECONDS`` and its
reads go to the primary.

Lag is measured on the replica. ``now() - pg_last_xact_replay_timestamp()`` alone is wrong on
an idle primary (nothing new to replay, so the last replayed commit gets old while the replica
is perfectly current), so a replica that is streaming and has replayed all the WAL it received
counts as current (lag 0), and otherwise its data is as fresh as the later of its last replayed
commit and the last time this process saw it current.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections

from apps.core.fastcache import fast_cache, key

logger = logging.getLogger("conveyor.replicas")

PRIMARY = "default"

# One round trip, on the replica: is it a standby, its clock, its last replayed commit, whether
# it has replayed everything it received, and whether a WAL receiver is running. (Without the
# pg_read_all_stats role the receiver's status reads NULL; a receiver that exists is then taken
# to be streaming.)
_PROBE = """
SELECT pg_is_in_recovery(),
       extract(epoch FROM now())::float8,
       extract(epoch FROM pg_last_xact_replay_timestamp())::float8,
       coalesce(pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(), false),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver
               WHERE coalesce(status, 'streaming') = 'streaming')
"""


# --- Read scopes --------------------------------------------------------------------------------


@dataclass
class ReadScope:
    allowed: bool = False
    # A primary-only scope stays closed whatever the code inside it asks for.
    locked: bool = False
    # Chosen at the first read and kept for the scope: one request sees one replica's state.
    alias: str | None = None
    used_replica: str | None = None


_scope: ContextVar[ReadScope | None] = ContextVar("conveyor_read_scope", default=None)


@contextmanager
def read_scope(*, allowed: bool = False) -> Iterator[ReadScope]:
    """A read scope for the duration of the block (a request, a command); closed by default."""
    scope = ReadScope(allowed=allowed)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def replica_reads() -> AbstractContextManager[ReadScope]:
    """``with replica_reads():`` reads in the block may use a replica (commands, reports)."""
    return read_scope(allowed=True)


@contextmanager
def primary_reads() -> Iterator[None]:
    """Reads in the block go to the primary, whatever the enclosing scope allows."""
    token = _scope.set(ReadScope(allowed=False, locked=True))
    try:
        yield
    finally:
        _scope.reset(token)


def allow_replica_reads() -> None:
    """From now to the end of the current scope, reads outside transactions may use a replica.
    Without a scope (a worker, a shell) nothing changes: reads stay on the primary."""
    scope = _scope.get()
    if scope is not None and not scope.locked:
        scope.allowed = True


def read_alias() -> str:
    """The database a read should use now (called by the router for every read)."""
    scope = _scope.get()
    if scope is None or not scope.allowed:
        return PRIMARY
    # Inside a transaction a read may be followed by a write that depends on it.
    if connections[PRIMARY].in_atomic_block:
        return PRIMARY
    if scope.alias is None:
        scope.alias = pick_replica() or PRIMARY
    if scope.alias != PRIMARY:
        scope.used_replica = scope.alias
    return scope.alias


def reading_from_replica() -> bool:
    """Whether a read made now would go to a replica."""
    return read_alias() != PRIMARY


# --- Configuration -------------------------------------------------------------------------------


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias != PRIMARY]


def replicas_configured() -> bool:
    return len(settings.DATABASES) > 1


def pin_seconds() -> float:
    """How long a caller's reads stay on the primary after it wrote: longer than any replica in
    rotation can lag (its lag was at most REPLICA_MAX_LAG_SECONDS when last checked, and it has
    had at most REPLICA_CHECK_SECONDS to fall further behind)."""
    configured: float | None = settings.REPLICA_PIN_SECONDS
    if configured is not None:
        return configured
    return settings.REPLICA_MAX_LAG_SECONDS + settings.REPLICA_CHECK_SECONDS + 1.0


# --- Read-your-writes -----------------------------------------------------------------------------
# After a caller writes, its reads go to the primary for pin_seconds(): it never sees its own job
# missing or older than what it was just told. The pin is a key in the fast cache; the API
# reads and sets it in the round trip that authenticates the request.


def pin_key(principal: str) -> str:
    """``principal`` is ``client:<id>`` for an API client, ``user:<id>`` for a staff user."""
    return key(f"pin:{principal}")


def pin_ttl() -> int:
    return max(1, math.ceil(pin_seconds()))


def pin(principal: str) -> None:
    """Keep ``principal``'s reads on the primary for a while (no-op without replicas)."""
    if not replicas_configured():
        return
    try:
        fast_cache().set(pin_key(principal), b"1", pin_ttl())
    except Exception:
        logger.warning("read-your-writes pin not written", exc_info=True)


def is_pinned(principal: str) -> bool:
    """Whether ``principal`` wrote recently; True when the cache cannot tell (the safe answer)."""
    try:
        return fast_cache().get_many([pin_key(principal)])[0] is not None
    except Exception:
        logger.warning("read-your-writes pin not readable", exc_info=True)
        return True


# --- Health and rotation -------------------------------------------------------------------------


@dataclass
class ReplicaState:
    alias: str
    in_rotation: bool = False
    state: str = "unchecked"  # in_rotation | lagging | down | not_a_standby | unchecked
    lag_seconds: float | None = None
    error: str | None = None
    checked_at: float = 0.0  # time.monotonic()
    next_check: float = 0.0  # time.monotonic()
    # Replica clock (epoch seconds) when this process last saw it current.
    current_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        lag = self.lag_seconds
        detail: dict[str, Any] = {
            "state": self.state,
            "in_rotation": self.in_rotation,
            # None: unknown (never checked, down, or no replayed commit to measure from).
            "lag_seconds": round(lag, 3) if lag is not None and math.isfinite(lag) else None,
        }
        if self.error:
            detail["error"] = self.error
        return detail


_states: dict[str, ReplicaState] = {}
_states_lock = threading.Lock()
_turn = itertools.count()


def state_of(alias: str) -> ReplicaState:
    state = _states.get(alias)
    if state is None:
        with _states_lock:
            state = _states.setdefault(alias, ReplicaState(alias))
    return state


def forget_states() -> None:
    """Drop what this process knows about replicas (tests, reconfiguration)."""
    with _states_lock:
        _states.clear()


def pick_replica() -> str | None:
    """A replica in rotation, round-robin; None when there is none (read the primary)."""
    aliases = replica_aliases()
    if not aliases:
        return None
    start = next(_turn)
    now = time.monotonic()
    for offset in range(len(aliases)):
        state = state_of(aliases[(start + offset) % len(aliases)])
        if now >= state.next_check and state.lock.acquire(blocking=False):
            # One thread checks; the others use the verdict they have meanwhile.
            try:
                check(state.alias)
            finally:
                state.lock.release()
        if state.in_rotation:
            return state.alias
    return None


def check(alias: str) -> ReplicaState:
    """Probe ``alias`` now (on this thread's connection to it) and update its rotation."""
    state = state_of(alias)
    reused = connections[alias].connection is not None
    try:
        row = _probe(alias)
    except Exception as exc:
        _close_quietly(alias)
        failure: Exception | None = exc
        if reused:
            # A persistent connection the server has dropped (restart, idle timeout) fails
            # once even when the server is fine: judge on a fresh connection. (A fresh one that
            # failed is the server's answer: no second connect timeout.)
            try:
                row, failure = _probe(alias), None
            except Exception as again:
                _close_quietly(alias)
                failure = again
        if failure is not None:
            logger.debug("replica %s check failed", alias, exc_info=failure)
            return _record(state, "down", None, type(failure).__name__)
    in_recovery, replica_now, replayed_at, replayed_all, receiving = row
    if not in_recovery:
        # A promoted or misconfigured "replica" does not follow our primary's writes.
        return _record(state, "not_a_standby", None, "not in recovery")
    if replayed_all and receiving:
        state.current_at = replica_now
        lag = 0.0
    else:
        fresh = max((t for t in (replayed_at, state.current_at) if t is not None), default=None)
        lag = math.inf if fresh is None else max(0.0, replica_now - fresh)
    if lag > settings.REPLICA_MAX_LAG_SECONDS:
        return _record(state, "lagging", lag, f"lag above {settings.REPLICA_MAX_LAG_SECONDS:g} s")
    return _record(state, "in_rotation", lag, None)


def _probe(alias: str) -> tuple[Any, ...]:
    with connections[alias].cursor() as cursor:
        cursor.execute(_PROBE)
        return tuple(cursor.fetchone())


def _record(
    state: ReplicaState, verdict: str, lag: float | None, error: str | None
) -> ReplicaState:
    now = time.monotonic()
    was = state.state
    state.state, state.lag_seconds, state.error, state.checked_at = verdict, lag, error, now
    state.in_rotation = verdict == "in_rotation"
    state.next_check = now + (
        settings.REPLICA_CHECK_SECONDS if state.in_rotation else settings.REPLICA_RETRY_SECONDS
    )
    if verdict != was:
        log = logger.info if state.in_rotation else logger.warning
        log("replica %s: %s (lag %s s, %s)", state.alias, verdict, lag, error or "ok")
    return state


def _close_quietly(alias: str) -> None:
    try:
        connections[alias].close()
    except Exception:
        logger.debug("closing %s failed", alias, exc_info=True)
