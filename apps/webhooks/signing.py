"""Standard Webhooks signatures (https://www.standardwebhooks.com).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``, one
per valid secret, space-separated: during a rotation both the new and the previous secret sign,
so a receiver can switch secrets at its own pace. The secret is ``whsec_`` + base64 of the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Iterable[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(signature(secret, webhook_id, timestamp, body) for secret in secrets)
