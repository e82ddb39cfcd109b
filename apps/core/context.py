"""Per-request (or per-job) context that log lines, Sentry events and messages pick up."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# A caller-supplied X-Request-ID is echoed only when it is a plain token: no spaces, no control
# characters, nothing that could split a header or forge a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def clean_request_id(candidate: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if candidate and _SANE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()
