"""Plain HTTP calls to the processes a test started (urllib: nothing between the test and the
server)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from django.utils.datastructures import CaseInsensitiveMapping


def call(
    base: str,
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Mapping[str, str], bytes]:
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions. Header
    names are case-insensitive, as HTTP's are (uvicorn sends them in lower case)."""
    request_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        request_headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers=request_headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, CaseInsensitiveMapping(dict(response.headers)), response.read()
    except urllib.error.HTTPError as error:
        return error.code, CaseInsensitiveMapping(dict(error.headers)), error.read()
