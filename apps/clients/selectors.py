"""Reads for authentication: API key → client, through the fast cache.

The cache holds the client's fields under the key's hash, so a request authenticates with one
cache read, and a caller that knows which other keys it will need (a job's status entry) gets
them in the same round trip. Any change to a key or client deletes its entries
(apps/clients/signals.py); a cache outage falls back to the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import orjson
from django.conf import settings
from django.utils import timezone

from apps.clients.keys import hash_api_key, looks_like_api_key
from apps.clients.models import ApiClient, ApiKey
from apps.core.fastcache import fast_cache, key

logger = logging.getLogger(__name__)

_CLIENT_FIELDS = ("id", "name", "is_active", "unlimited", "max_active_jobs")
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


def authenticate_key(
    plain_key: str, *, also: Callable[[int], Sequence[str]] | None = None
) -> tuple[ApiClient | None, list[bytes | None]]:
    """The active client owning this unrevoked key (or None), and the cache values of the keys
    ``also(client_id)`` names, fetched in the same round trip when the owner is known (else
    None each: the caller reads the database)."""
    if not looks_like_api_key(plain_key):
        return None, []
    key_hash = hash_api_key(plain_key)
    auth_key = auth_cache_key(key_hash)
    owner = _owner_of.get(key_hash)
    extra_keys = list(also(owner)) if also is not None and owner is not None else []
    now = time.monotonic()
    recent = _recently_valid.get(key_hash)
    entry: bytes | None = recent[1] if recent is not None and recent[0] > now else None
    try:
        if entry is None:
            values = fast_cache().get_many([auth_key, *extra_keys])
            entry, extra = values[0], values[1:]
        else:
            extra = fast_cache().get_many(extra_keys) if extra_keys else []
    except Exception:  # a cache outage must not lock everybody out
        logger.warning("auth cache read failed", exc_info=True)
        extra = [None] * len(extra_keys)
    if entry is None:
        entry = _entry_from_database(key_hash)
        try:
            ttl = _NEGATIVE_TTL if entry == _MISSING else settings.API_KEY_CACHE_SECONDS
            fast_cache().set(auth_key, entry, ttl)
        except Exception:
            logger.warning("auth cache write failed", exc_info=True)
    if entry == _MISSING:
        return None, []
    if recent is None or recent[0] <= now:
        _recently_valid[key_hash] = (now + settings.API_KEY_LOCAL_SECONDS, entry)
    fields = orjson.loads(entry)
    key_id = fields.pop("key_id")
    client = ApiClient(**fields)
    client.api_key_id = key_id  # type: ignore[attr-defined]
    _owner_of[key_hash] = client.pk
    _touch_last_used(key_id)
    if also is not None and owner is None:
        extra = [None] * len(also(client.pk))
    return client, extra


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
