"""Cron expressions and time zones of schedules: what is accepted, and when the next tick is.

The expressions are evaluated by cronsim (Healthchecks' cron evaluator), not by a parser of our
own. Chosen over croniter because it is written to match Debian's cron, DST transitions
included, works on ``zoneinfo`` datetimes without pytz or dateutil, has no dependencies, and is
maintained for a service (healthchecks.io) whose whole job is cron semantics; croniter does
its arithmetic on timestamps, has a long record of DST bugs, and was declared abandoned by its
author (2024-2025) before pallets-eco took it over. docs/operations.md ("Schedules") says what
users can rely on.

Accepted: exactly five fields (minute hour day-of-month month day-of-week), each a list of
``*``, a number or a range, optionally stepped (``*/15``, ``1-10/3``); month and weekday names
(``JAN``, ``mon``); ``L`` / ``LW`` in day-of-month and ``5L`` / ``1#2`` in day-of-week. The
grammar is ``CRON_PATTERN`` (a regular expression, stated in the OpenAPI document too), and
cronsim refuses what the grammar cannot say (a range whose end comes before its start, a day
that no chosen month has). The finest resolution is one minute: no seconds field.

Time in a time zone (DST), as Debian's cron does, for an expression with a fixed minute and
hour (``30 2 * * *``):
- a wall-clock time that does not exist that day (spring forward, 02:30 in Europe/Paris on the
  last Sunday of March) fires at the first minute that exists after it (03:00 local);
- a wall-clock time that happens twice (fall back, the last Sunday of October) fires once, at
  its first occurrence (02:30 CEST, 00:30 UTC).
An expression whose minute or hour field starts with ``*`` (``*/10 * * * *``, ``30 * * * *``)
follows real elapsed time: every real hour gets its runs, the repeated hour included.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime
from functools import cache

from cronsim import CronSim, CronSimError

CRON_MAX_LENGTH = 200
TIMEZONE_MAX_LENGTH = 64
DEFAULT_TIMEZONE = "UTC"

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _names(names: list[str]) -> list[str]:
    # cronsim reads names in any case; the grammar takes the three usual spellings.
    return [form for name in names for form in (name, name.lower(), name.capitalize())]


def _field(values: list[str], specials: list[str], *, ranges: bool) -> str:
    value = "(?:" + "|".join(values) + ")"
    atom = rf"(?:\*|{value}-{value}|{value})" if ranges else rf"(?:\*|{value})"
    item = "(?:" + "|".join([*specials, rf"{atom}(?:/[1-9][0-9]?)?"]) + ")"
    return f"{item}(?:,{item})*"


def cron_pattern(*, ranges: bool = True, day_max: int = 31, specials: bool = True) -> str:
    """The grammar of a five-field expression as an anchored regular expression (JSON Schema's
    dialect and Python's alike). ``ranges=False, day_max=29, specials=False`` gives a narrower
    grammar every match of which fires (tests/e2e/test_schema_fuzz.py generates from it): no
    reversed range, no day missing from the chosen months, no ``LW`` that must be a Sunday."""
    days = ["0?[1-9]", "1[0-9]", "2[0-9]"] + (["3[01]"] if day_max >= 31 else [])
    fields = [
        _field(["[0-5]?[0-9]"], [], ranges=ranges),
        _field(["[01]?[0-9]", "2[0-3]"], [], ranges=ranges),
        _field(days, ["LW", "L"] if specials else [], ranges=ranges),
        _field(["0?[1-9]", "1[0-2]", *_names(_MONTHS)], [], ranges=ranges),
        _field(
            ["[0-7]", *_names(_DAYS)], ["[0-7]#[1-5]", "[0-7]L"] if specials else [], ranges=ranges
        ),
    ]
    return "^" + " ".join(fields) + "$"


CRON_PATTERN = cron_pattern()
_CRON = re.compile(CRON_PATTERN)


@cache
def timezones() -> frozenset[str]:
    """The IANA time zone names accepted: the tz database's (the system's, else the ``tzdata``
    package's), without ``localtime`` (the machine's own, not a zone) and ``Factory``."""
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory", "posixrules"})


def cron_problem(expression: object) -> str | None:
    """Why ``expression`` is not an accepted cron expression, or None."""
    if not isinstance(expression, str):
        return "Must be a string."
    if len(expression) > CRON_MAX_LENGTH or not _CRON.fullmatch(expression):
        return (
            "Must be five fields separated by single spaces: minute hour day-of-month month "
            "day-of-week (for example '30 2 * * *')."
        )
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        return f"Not a cron expression that can fire: {exc}."
    return None


def timezone_problem(name: object) -> str | None:
    """Why ``name`` is not an accepted time zone, or None."""
    if not isinstance(name, str) or name not in timezones():
        return "Must be an IANA time zone name such as 'UTC' or 'Europe/Paris'."
    return None


def next_tick(expression: str, timezone: str, *, after: datetime) -> datetime | None:
    """The first moment strictly after ``after`` at which the expression fires in ``timezone``
    (UTC), or None when it never fires again within cronsim's 50-year horizon."""
    ticks = CronSim(expression, after.astimezone(zoneinfo.ZoneInfo(timezone)))
    try:
        tick = next(ticks).astimezone(UTC)
        # cronsim counts a fixed-hour expression's days in wall-clock time: from inside a
        # repeated (fall-back) hour, that day's first occurrence is behind us. It has fired.
        while tick <= after:
            tick = next(ticks).astimezone(UTC)
    except StopIteration:
        return None
    return tick
