"""The opaque cursor of keyset pagination: a row's UUID primary key, base64url without padding.

Lists page by ``pk < cursor`` (ids are UUIDv7, so newest first is descending id order); a
client only ever passes back the ``next`` link it was given.
"""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

from apps.core.errors import ValidationFailed

# What encode_cursor writes: 22 characters of the URL-safe alphabet (the OpenAPI document states
# it). base64's decoder alone would skip stray characters and take a tampered cursor.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{22}$"
_CURSOR = re.compile(CURSOR_PATTERN[1:-1])


def encode_cursor(pk: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(pk.bytes).rstrip(b"=").decode()


def decode_cursor(value: str) -> uuid.UUID:
    """The id in ``value``, or ValidationFailed (400) naming the ``cursor`` parameter."""
    if not _CURSOR.fullmatch(value):
        raise ValidationFailed(
            "The cursor is not valid.", details={"cursor": ["Not a cursor from this API."]}
        )
    return uuid.UUID(bytes=base64.urlsafe_b64decode(value + "=="))


def page_limit(params: Any, *, default: int, maximum: int, errors: dict[str, list[str]]) -> int:
    """The ``limit`` query parameter of a list (``default`` when absent); a value that is not
    an integer from 1 to ``maximum`` is noted in ``errors``."""
    if "limit" not in params:
        return default
    raw = params["limit"]
    limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 0
    if not 1 <= limit <= maximum:
        errors["limit"] = [f"Must be an integer from 1 to {maximum}."]
    return limit


def next_page_url(request: Any, next_pk: uuid.UUID | None) -> str | None:
    """The absolute URL of the next page (the same query with the cursor after ``next_pk``), or
    None at the end."""
    if next_pk is None:
        return None
    query = request.query_params.copy()
    query["cursor"] = encode_cursor(next_pk)
    return str(request.build_absolute_uri(f"{request.path}?{query.urlencode()}"))
