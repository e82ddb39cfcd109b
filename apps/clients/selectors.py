"""Reads for authentication: API key → client, through the fast cache.

The cache holds the client's fields (its limits included) under the key's hash, so a request
authenticates with one cache read, and a caller that knows which other cache work it needs (a
job's status entry, its rate counter, its read-your-writes pin) gets it done in the same round
trip. Any change to a key or client deletes its entries, and a change that refuses a key (a
revocation, a deactivation, a deletion) replaces them with a refusal (apps/clients/signals.py).
An entry is only ever filled where none is (``SET NX``): a request that read the key from the
database just before its revocation committed cannot put back a stale "valid" over the refusal.
So a revoked key is refused everywhere within ``API_KEY_LOCAL_SECONDS`` (2 s), the time each
web process trusts its own memory. A cache outage falls back to the database; if the refusal
could not be written (the cache unreachable from the revoking process), the maintenance loop
writes it again (``api_keys_refuse_in_cache``) within a tick of the cache answering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models.base import ModelState
from django.utils import timezone

from apps.clients.keys import hash_api_key, looks_like_api_key
from apps.clients.models import ApiClient, ApiKey
from apps.core.fastcache import Batch, BatchResult, fast_cache, key

logger = logging.getLogger(__name__)

_CLIENT_FIELDS = (
    "id",
    "name",
    "is_active",
    "unlimited",
    "max_active_jobs",
    "max_running_jobs",
    "rate_limit_submit",
    "rate_limit_read",
    "rate_limit_list",
)
_MISSING = b"-"
_NEGATIVE_TTL = 30
_LAST_USED_EVERY = 60.0
_last_used_written: dict[int, float] = {}
# A key never changes owner, so which client a key hash belongs to can be remembered for the
# life of the process.
_owner_of: dict[str, int] = {}
# Whether a key is valid is remembered for API_KEY_LOCAL_SECONDS in each process: a revocation
# takes effect at once in the process that made it and within that time everywhere else.
_recently_valid: dict[str, tuple[float, bytes]] = {}


def auth_cache_key(key_hash: str) -> str:
    return key(f"auth:{key_hash}")


def _entry_from_database(key_hash: str) -> bytes:
    row = (
        ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True, client__is_active=True)
        .select_related("client")
        .only("id", *(f"client__{name}" for name in _CLIENT_FIELDS))
        .first()
    )
    if row is None:
        return _MISSING
    fields = {name: getattr(row.client, name) for name in _CLIENT_FIELDS}
    return orjson.dumps({"key_id": row.pk, **fields})


@dataclass(frozen=True)
class Guard:
    """A counter to bump for a key not yet known to be valid, and what to do with its count
    before the database is asked about that key (raise to refuse)."""

    counter: tuple[str, int]
    check: Callable[[int | None], None]


def authenticate_key(
    plain_key: str,
    *,
    also: Callable[[int, ApiClient | None], Batch] | None = None,
    unverified: Callable[[], Guard | None] | None = None,
) -> tuple[ApiClient | None, BatchResult]:
    """The active client owning this unrevoked key (or None), and the result of the cache work
    ``also(client_id, client_or_None)`` asks for (keys to read, a counter, keys to set).

    When this process knows the key's owner, that work rides in the authentication round trip
    (``also`` then gets the client as this process remembers it, or None when its entry is
    being fetched in the same trip); otherwise it is a second round trip once the owner is
    known. ``unverified()`` guards the database: for a key whose owner this process does not
    know, the guard's counter rides in the first round trip and its ``check`` runs before the
    database is asked about a key the cache does not vouch for (it raises to refuse).
    """
    no_result = BatchResult([])
    if not looks_like_api_key(plain_key):
        return None, no_result
    key_hash = hash_api_key(plain_key)
    auth_key = auth_cache_key(key_hash)
    owner = _owner_of.get(key_hash)
    now = time.monotonic()
    recent = _recently_valid.get(key_hash)
    entry: bytes | None = recent[1] if recent is not None and recent[0] > now else None
    remembered = _client_from_entry(entry) if entry is not None else None
    batch = Batch()
    guard = None
    if owner is not None and also is not None:
        batch = also(owner, remembered)
    elif owner is None and unverified is not None and (guard := unverified()) is not None:
        batch = Batch(counter=guard.counter)
    fetch_entry = entry is None
    if fetch_entry:
        batch.get.insert(0, auth_key)
    try:
        result = fast_cache().run(batch)
    except Exception:  # a cache outage must not lock everybody out
        logger.warning("auth cache read failed", exc_info=True)
        result = BatchResult.failed(batch)
    if fetch_entry:
        entry = result.values.pop(0)
    if guard is not None and entry in (None, _MISSING):
        guard.check(result.count)
    if entry is None:
        entry = _entry_from_database(key_hash)
        try:
            ttl = _NEGATIVE_TTL if entry == _MISSING else settings.API_KEY_CACHE_SECONDS
            # Never over an entry that is there (a refusal written meanwhile).
            fast_cache().add(auth_key, entry, ttl)
        except Exception:
            logger.warning("auth cache write failed", exc_info=True)
    if entry == _MISSING:
        return None, no_result
    if recent is None or recent[0] <= now:
        _recently_valid[key_hash] = (now + settings.API_KEY_LOCAL_SECONDS, entry)
    client = remembered if remembered is not None else _client_from_entry(entry)
    _owner_of[key_hash] = client.pk
    _touch_last_used(client.api_key_id)  # type: ignore[attr-defined]
    if owner is None and also is not None:
        second = also(client.pk, client)
        try:
            result = fast_cache().run(second)
        except Exception:
            logger.warning("cache read failed", exc_info=True)
            result = BatchResult.failed(second)
    elif owner is None:
        result = no_result
    return client, result


def _client_from_entry(entry: bytes) -> ApiClient:
    """The client as the cache describes it: the cached fields set, the others deferred (loaded
    from the database if ever read), as a queryset's ``.only()`` would give it. Not through
    ``ApiClient(**fields)``, which would compute every missing field's default (a new webhook
    secret among them) on every request."""
    fields = orjson.loads(entry)
    key_id = fields.pop("key_id")
    client = ApiClient.__new__(ApiClient)
    client._state = ModelState()
    client._state.adding = False
    client._state.db = DEFAULT_DB_ALIAS
    client.__dict__.update(fields)
    client.api_key_id = key_id  # type: ignore[attr-defined]
    return client


def refusal() -> bytes:
    """The entry that refuses a key."""
    return _MISSING


def forget_in_process(key_hashes: Sequence[str]) -> None:
    for key_hash in key_hashes:
        _recently_valid.pop(key_hash, None)


def client_for_api_key(plain_key: str) -> ApiClient | None:
    """The active client owning this unrevoked key, or None."""
    return authenticate_key(plain_key)[0]


def _touch_last_used(key_id: int) -> None:
    # At most one write per key per minute per process: "last used" is for humans, and a write
    # on every request would put a database round trip on the read path.
    now = time.monotonic()
    if now - _last_used_written.get(key_id, -_LAST_USED_EVERY) < _LAST_USED_EVERY:
        return
    _last_used_written[key_id] = now
    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())
