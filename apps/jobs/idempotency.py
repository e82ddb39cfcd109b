"""Idempotency-Key for POST /jobs and /jobs/batch (API.md, "Idempotency").

Per client and key: the first request's response is stored with the jobs it created, in the
same transaction, and replayed (same status, same body) for any later request with the same key
and the same body; a different body is a 422 conflict. While the first request is still in
flight, a second one gets 409 at once instead of waiting: the first holds a transaction-scoped
advisory lock on (client, key), which the second fails to take. Records are kept
``IDEMPOTENCY_KEY_TTL_HOURS`` (24 h) and then purged by the maintenance loop.

Only successful submissions are stored: a request refused for validation, quota or rate reasons
created nothing, and may be corrected and sent again with the same key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connections, transaction
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.core.errors import IdempotencyConflict, IdempotencyInProgress, ValidationFailed
from apps.jobs.models import IdempotencyRecord

KEY_PATTERN = r"[!-~]{1,255}"  # printable ASCII, no spaces (also the OpenAPI pattern)
_KEY = re.compile(KEY_PATTERN)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    location: str = ""
    replayed: bool = False
    # The job's ETag as of ``body`` (single submissions; "" for a batch): lets a client
    # long-poll the job (``If-None-Match``) straight from the submission's answer.
    etag: str = ""
    # The answer is an existing job (unique jobs): sent as ``Conveyor-Duplicate: true``. Not
    # stored: a replay says ``Idempotent-Replayed`` instead.
    duplicate: bool = False


def validate_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValidationFailed(
            "The Idempotency-Key header must be 1-255 printable ASCII characters.",
            details={"Idempotency-Key": ["1-255 printable ASCII characters, no spaces."]},
        )
    return key


def request_hash(method: str, path: str, data: Any) -> str:
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{method} {path} ".encode() + canonical).hexdigest()


def _lock_id(client_id: int, key: str) -> int:
    digest = hashlib.sha256(f"idempotency:{client_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _replay(record: IdempotencyRecord, fingerprint: str) -> StoredResponse:
    if record.request_hash != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request.",
            details={"Idempotency-Key": [record.key]},
        )
    return StoredResponse(
        record.status_code, bytes(record.response), record.location, True, etag=record.etag
    )


def run_once(
    *,
    client: ApiClient,
    key: str,
    fingerprint: str,
    produce: Callable[[], StoredResponse],
) -> StoredResponse:
    """The stored response for (client, key), or ``produce()``'s, stored with it atomically."""
    records = IdempotencyRecord.objects.using("default")
    with transaction.atomic(using="default"):
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_lock_id(client.pk, key)])
            locked = cursor.fetchone()[0]
        existing = records.filter(client_id=client.pk, key=key).first()
        if existing is not None:
            return _replay(existing, fingerprint)
        if not locked:
            raise IdempotencyInProgress()
        response = produce()
        # The lock makes this the only request for (client, key) in flight, and it found no
        # record: the unique constraint is a guard, never the arbiter.
        records.create(
            client_id=client.pk,
            key=key,
            request_hash=fingerprint,
            status_code=response.status,
            response=response.body,
            location=response.location,
            etag=response.etag,
            created_at=timezone.now(),
        )
    return response
