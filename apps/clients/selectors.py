"""Reads for authentication: API key → client, through the cache.

The cache holds the client's fields under the key's hash, so a request authenticates with one
cache read. Any change to a key or client deletes the entries (apps/clients/signals.py); a cache
outage falls back to the database.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from apps.clients.keys import hash_api_key, looks_like_api_key
from apps.clients.models import ApiClient, ApiKey

logger = logging.getLogger(__name__)

_CLIENT_FIELDS = ("id", "name", "is_active", "unlimited", "max_active_jobs")
_MISSING = {"missing": True}
_NEGATIVE_TTL = 30
_LAST_USED_EVERY = 60.0
_last_used_written: dict[int, float] = {}


def auth_cache_key(key_hash: str) -> str:
    return f"auth:key:{key_hash}"


def _load(key_hash: str) -> dict[str, Any]:
    row = (
        ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True, client__is_active=True)
        .select_related("client")
        .only("id", *(f"client__{name}" for name in _CLIENT_FIELDS))
        .first()
    )
    if row is None:
        return _MISSING
    return {"key_id": row.pk, **{name: getattr(row.client, name) for name in _CLIENT_FIELDS}}


def client_for_api_key(plain_key: str) -> ApiClient | None:
    """The active client owning this unrevoked key, or None."""
    if not looks_like_api_key(plain_key):
        return None
    key_hash = hash_api_key(plain_key)
    cache_key = auth_cache_key(key_hash)
    try:
        entry = cache.get(cache_key)
    except Exception:  # a cache outage must not lock everybody out
        logger.warning("auth cache read failed", exc_info=True)
        entry = None
    if entry is None:
        entry = _load(key_hash)
        try:
            ttl = _NEGATIVE_TTL if entry is _MISSING else settings.API_KEY_CACHE_SECONDS
            cache.set(cache_key, entry, ttl)
        except Exception:
            logger.warning("auth cache write failed", exc_info=True)
    if entry.get("missing"):
        return None
    client = ApiClient(**{name: entry[name] for name in _CLIENT_FIELDS})
    client.api_key_id = entry["key_id"]  # type: ignore[attr-defined]
    _touch_last_used(entry["key_id"])
    return client


def _touch_last_used(key_id: int) -> None:
    # At most one write per key per minute per process: "last used" is for humans, and a write
    # on every request would put a database round trip on the read path.
    now = time.monotonic()
    if now - _last_used_written.get(key_id, -_LAST_USED_EVERY) < _LAST_USED_EVERY:
        return
    _last_used_written[key_id] = now
    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())
