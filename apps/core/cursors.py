"""The opaque cursor of keyset pagination: a row's UUID primary key, base64url without padding.

Lists page by ``pk < cursor`` (ids are UUIDv7, so newest first is descending id order); a
client only ever passes back the ``next`` link it was given.
"""

from __future__ import annotations

import base64
import uuid

from apps.core.errors import ValidationFailed


def encode_cursor(pk: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(pk.bytes).rstrip(b"=").decode()


def decode_cursor(value: str) -> uuid.UUID:
    """The id in ``value``, or ValidationFailed (400) naming the ``cursor`` parameter."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return uuid.UUID(bytes=raw)
    except (ValueError, TypeError):
        raise ValidationFailed(
            "The cursor is not valid.", details={"cursor": ["Not a cursor from this API."]}
        ) from None
