"""Verifying Conveyor's webhooks (Standard Webhooks, https://www.standardwebhooks.com).

The server signs ``"{webhook-id}.{webhook-timestamp}.{body}"`` with HMAC-SHA256 under the
client's secret (``whsec_`` + base64 of the key) and sends ``webhook-signature: v1,<base64>``,
several space-separated during a secret rotation (apps/webhooks/signing.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from conveyor_client.errors import WebhookVerificationError
from conveyor_client.models import Job, WebhookEvent, parse_time

#: How far a webhook's timestamp may be from now (replays of old deliveries are refused).
DEFAULT_TOLERANCE_SECONDS = 300


def _header(headers: Mapping[str, str], name: str) -> str:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is None:  # a plain dict with other casing
        for key, item in headers.items():
            if key.lower() == name:
                return item
        raise WebhookVerificationError(f"missing header {name}")
    return str(value)


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the webhook secret is not whsec_ + base64") from exc


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """The verified event, or :class:`WebhookVerificationError`.

    ``body`` must be the raw bytes received (re-serialized JSON does not verify). ``headers``
    is any mapping (Django's ``request.headers``, a dict); names are matched case-insensitively.
    A timestamp more than ``tolerance`` seconds from ``now`` is refused.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    webhook_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    signed = f"{webhook_id}.{timestamp}.".encode() + raw
    expected = base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            break
    else:
        raise WebhookVerificationError("no valid signature")
    try:
        payload: Any = json.loads(raw)
        job = Job.from_dict(payload["data"])
        return WebhookEvent(
            id=webhook_id,
            type=str(payload["type"]),
            timestamp=parse_time(payload.get("timestamp")),
            job=job,
            raw=payload,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookVerificationError(f"signed, but not a Conveyor event: {exc}") from exc
