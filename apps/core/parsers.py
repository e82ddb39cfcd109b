"""orjson-backed JSON request parsing with the body-size limit enforced while reading.

DRF reads the request stream directly, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so
the limit lives here: a declared Content-Length over it is refused before reading, and a body that
turns out longer is cut off at limit + 1 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from apps.core.errors import PayloadTooLarge


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over the limit of {limit} bytes.", details={"limit_bytes": limit}
    )


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
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise _too_large(limit)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
