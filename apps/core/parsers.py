"""orjson-backed JSON request parsing: the body-size limit and input hygiene in one place.

DRF reads the request stream directly, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so
the limit lives here: a declared Content-Length over it is refused before reading, and a body that
turns out longer is cut off at limit + 1 bytes.

Every JSON body of the API passes here, so this is where client data that the rest of the system
cannot hold is refused, as 400 ``validation_error`` naming the problem in ``details.body``:

- invalid UTF-8, lone surrogates (``"\\ud800"``), ``NaN``/``Infinity`` and numbers beyond a
  double (``1e400``): orjson refuses them while parsing;
- NUL (``\\u0000``) in any string or key: PostgreSQL text and jsonb cannot store it;
- nesting deeper than ``JSON_MAX_DEPTH``: nothing in the API needs it, and deeper values break
  serialisers with recursion limits (orjson writes at most 254 levels).

Both checks stay off the hot path: the NUL walk runs only when the raw bytes contain
``\\u0000`` at all, the depth walk only when the body has more opening brackets than the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings
from rest_framework.parsers import BaseParser

from apps.core.errors import PayloadTooLarge, ValidationFailed


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over the limit of {limit} bytes.", details={"limit_bytes": limit}
    )


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"body": [message]})


def has_nul(value: Any) -> bool:
    """True when a string or key anywhere in the parsed JSON ``value`` holds a NUL."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def depth_over(value: Any, limit: int) -> bool:
    """True when containers nest more than ``limit`` levels deep in the parsed JSON ``value``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def check_json(body: bytes, value: Any) -> None:
    """ValidationFailed when the parsed ``value`` (of raw ``body``) holds what Conveyor refuses."""
    if b"\\u0000" in body and has_nul(value):
        raise _refused("Strings and keys may not contain the NUL character (\\u0000).")
    limit = settings.JSON_MAX_DEPTH
    if (
        isinstance(value, dict | list)
        and body.count(b"[") + body.count(b"{") > limit
        and depth_over(value, limit)
    ):
        raise _refused(f"The JSON nests deeper than {limit} levels.")


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        if request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise _too_large(limit)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise _too_large(limit)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _refused(f"Malformed JSON: {exc}") from None
        check_json(body, value)
        return value
