"""Cron expressions and time zones: what is accepted, and when the next tick is, DST included
(apps/schedules/cron.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from apps.schedules.cron import (
    CRON_PATTERN,
    cron_pattern,
    cron_problem,
    next_tick,
    timezone_problem,
)


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "30 2 * * *",
        "*/15 9-17 * * MON-FRI",
        "0 0 1,15 * *",
        "0 12 L * *",
        "0 12 LW * *",
        "0 8 * * 5L",
        "0 8 * * 1#2",
        "5 4 * jan,jul sun",
        "0 0 29 2 *",
        "1-10/3 * * * 7",
    ],
)
def test_good_expressions_are_accepted(expression: str) -> None:
    assert cron_problem(expression) is None
    assert re.fullmatch(CRON_PATTERN, expression)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",  # four fields
        "0 * * * * *",  # six: no seconds field
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        " * * * * *",
        "*  * * * *",
        "@daily",
        "5-3 * * * *",  # a range that ends before it starts
        "0 0 31 2 *",  # no February has a 31st
        "0 0 30 2 *",
        "* * * * MON\x00",
        12345,
        None,
    ],
)
def test_bad_expressions_are_refused(expression: object) -> None:
    assert cron_problem(expression) is not None


def test_the_narrow_grammar_only_matches_expressions_that_fire() -> None:
    narrow = cron_pattern(ranges=False, day_max=29, specials=False)
    assert re.fullmatch(narrow, "*/5 3 29 2 SUN")
    assert not re.fullmatch(narrow, "0 0 LW 1 */7,0#1")  # the fuzzer's find: never fires
    assert not re.fullmatch(narrow, "5-3 * * * *")
    assert not re.fullmatch(narrow, "0 0 31 * *")


@pytest.mark.parametrize("name", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"])
def test_iana_time_zones_are_accepted(name: str) -> None:
    assert timezone_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "europe/paris", "localtime", "../../etc/passwd", "UTC\x00", 3]
)
def test_other_time_zones_are_refused(name: object) -> None:
    assert timezone_problem(name) is not None


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ticks(expression: str, zone: str, start: datetime, count: int) -> list[datetime]:
    found, after = [], start
    for _ in range(count):
        tick = next_tick(expression, zone, after=after)
        assert tick is not None
        found.append(tick)
        after = tick
    return found


def test_next_tick_is_strictly_after() -> None:
    assert next_tick("30 2 * * *", "UTC", after=utc(2027, 1, 5, 2, 30)) == utc(2027, 1, 6, 2, 30)
    assert next_tick("30 2 * * *", "UTC", after=utc(2027, 1, 5, 2, 29, 59)) == utc(
        2027, 1, 5, 2, 30
    )


def test_a_time_zone_moves_the_tick() -> None:
    # 02:30 in Paris is 01:30 UTC in winter (CET) and 00:30 UTC in summer (CEST).
    assert next_tick("30 2 * * *", "Europe/Paris", after=utc(2027, 1, 5)) == utc(2027, 1, 5, 1, 30)
    assert next_tick("30 2 * * *", "Europe/Paris", after=utc(2027, 7, 5)) == utc(2027, 7, 5, 0, 30)


def test_spring_forward_fires_the_missing_time_once_at_the_first_minute_after_it() -> None:
    # 2027-03-28, Europe/Paris: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    days = ticks("30 2 * * *", "Europe/Paris", utc(2027, 3, 26, 12), 4)
    assert days == [
        utc(2027, 3, 27, 1, 30),  # 02:30 CET
        utc(2027, 3, 28, 1, 0),  # 03:00 CEST, the first minute after the missing 02:30
        utc(2027, 3, 29, 0, 30),  # 02:30 CEST
        utc(2027, 3, 30, 0, 30),
    ]


def test_fall_back_fires_the_repeated_time_once_at_its_first_occurrence() -> None:
    # 2027-10-31, Europe/Paris: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    days = ticks("30 2 * * *", "Europe/Paris", utc(2027, 10, 29, 12), 4)
    assert days == [
        utc(2027, 10, 30, 0, 30),  # 02:30 CEST
        utc(2027, 10, 31, 0, 30),  # 02:30 CEST, the first of the two; not 01:30 UTC too
        utc(2027, 11, 1, 1, 30),  # 02:30 CET
        utc(2027, 11, 2, 1, 30),
    ]


def test_from_inside_the_repeated_hour_the_day_has_already_fired() -> None:
    # 01:10 UTC on 2027-10-31 is 02:10 CET, after 02:30 CEST fired: the next is the next day.
    assert next_tick("30 2 * * *", "Europe/Paris", after=utc(2027, 10, 31, 1, 10)) == utc(
        2027, 11, 1, 1, 30
    )


def test_hourly_expressions_follow_real_time_across_dst() -> None:
    # Every real hour gets its :30 run: the repeated hour twice, the missing hour not at all.
    fall = ticks("30 * * * *", "Europe/Paris", utc(2027, 10, 30, 23, 45), 4)
    assert [t - fall[0] for t in fall] == [timedelta(hours=h) for h in range(4)]
    spring = ticks("30 * * * *", "Europe/Paris", utc(2027, 3, 27, 23, 45), 4)
    assert [t - spring[0] for t in spring] == [timedelta(hours=h) for h in range(4)]


def test_a_rare_day_is_found_years_ahead() -> None:
    assert next_tick("0 0 29 2 *", "UTC", after=utc(2027, 1, 1)) == utc(2028, 2, 29)
