"""Strict RFC 3339 date-times: what the OpenAPI document's ``format: date-time`` promises.

``datetime.fromisoformat`` also takes forms RFC 3339 does not (``20240101T000000+0000``, a date
alone, no offset); the API takes exactly RFC 3339's ``date-time``, with a leap second read as
second 59. A value Python's datetime cannot represent (year 0) is refused like a malformed one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_rfc3339(value: object) -> datetime | None:
    """The aware datetime ``value`` spells, or None when it is not an RFC 3339 date-time."""
    if not isinstance(value, str):
        return None
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    sign, off_hours, off_minutes = match.group(8, 9, 10)
    try:
        tz = UTC
        if sign is not None:
            offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
            tz = timezone(-offset if sign == "-" else offset)
        return datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)
    except ValueError:
        return None
