"""Log formatting: JSON lines (production) or plain text, with secrets masked and the request id
(and, in workers, the job id) added from context. While a worker runs a job, the values of its
input fields that the job type marks sensitive are replaced as well.

Referenced by ``LOGGING`` in config/settings.py and by gunicorn's own log configuration
(config/gunicorn.py), so it imports nothing from Django.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from apps.core.context import current_job, current_request_id, current_sensitive_values

# API keys, webhook secrets and bearer tokens never reach a log line, whoever logs them (a
# traceback quoting a header, a handler printing its input). The substring test first keeps the
# common case (nothing to mask) free of regex work.
_SECRETS = re.compile(r"(cvk_|whsec_)[A-Za-z0-9_\-+/=]{4,}|(?i:(bearer)\s+)[^\s\"',;]+")
_MARKERS = ("cvk_", "whsec_", "earer")
MASK = "***"


def _mask(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + MASK
    return match.group(2) + " " + MASK


def mask_secrets(text: str) -> str:
    """``text`` with API keys, webhook secrets and bearer tokens replaced by ``***``."""
    if any(marker in text for marker in _MARKERS):
        return _SECRETS.sub(_mask, text)
    return text


FILTERED = "[Filtered]"
# Shorter values would be replaced inside unrelated words.
MIN_SENSITIVE_LENGTH = 3


def sensitive_strings(data: Any, fields: Iterable[str]) -> tuple[str, ...]:
    """The values (as text, nested ones included) of ``fields`` in ``data``, longest first: what
    ``redact`` replaces while a job with this input runs."""
    found: set[str] = set()
    if isinstance(data, dict):
        for name in fields:
            if name in data:
                found.update(_scalars(data[name]))
    return tuple(
        sorted((v for v in found if len(v) >= MIN_SENSITIVE_LENGTH), key=len, reverse=True)
    )


def _scalars(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _scalars(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _scalars(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def redact(text: str) -> str:
    """``mask_secrets`` plus the running job's sensitive input values replaced."""
    text = mask_secrets(text)
    for value in current_sensitive_values():
        if value in text:
            text = text.replace(value, FILTERED)
    return text


def _add_context(fields: dict[str, Any]) -> None:
    if "request_id" not in fields:
        request_id = current_request_id()
        if request_id:
            fields["request_id"] = request_id
    if "job_id" not in fields:
        job = current_job()
        if job is not None:
            fields["job_id"] = str(job.pk)


# What every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class JsonFormatter(OrjsonFormatter):
    """One JSON object per line: time, level, logger, message, the record's ``extra`` fields,
    ``request_id``/``job_id`` from context, and ``exc_info`` as text when there is one."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        # The library's generic field mapping (renames, reserved lists, format-string parsing)
        # costs more than the rest of a line together; every request writes one.
        log_data["time"] = datetime.fromtimestamp(record.created, UTC)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name[0] != "_":
                log_data[name] = value
        log_data.update(message_dict)
        _add_context(log_data)

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return redact(super().serialize_log_record(log_data))


class PlainFormatter(logging.Formatter):
    """``time level logger message [request_id=…]`` for people reading a terminal."""

    def __init__(self, fmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            text += f" request_id={request_id}"
        return redact(text)
