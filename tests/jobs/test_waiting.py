"""The parsing of a long-poll's wait (apps/jobs/waiting.py); the waits themselves are in
tests/e2e/test_waiting.py, against real uvicorn workers."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from apps.core.errors import ValidationFailed
from apps.jobs.waiting import parse_prefer_wait, parse_wait_query


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("return=minimal", None),
        ("wait=1", 1),
        ("wait=60", 60),
        ("respond-async, wait=5", 5),
        ("Wait = 7", 7),
        ('wait="9"', 9),
        ("wait=10; foo=bar", 10),
        ("return=representation,wait=30", 30),
    ],
)
def test_prefer_wait_is_read_among_other_preferences(
    header: str | None, seconds: int | None
) -> None:
    assert parse_prefer_wait(header) == seconds


@pytest.mark.parametrize(
    "header", ["wait=0", "wait=61", "wait=abc", "wait=", "wait=-1", "wait=1.5", "wait=1, wait=2"]
)
def test_a_bad_prefer_wait_is_a_validation_error(header: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_prefer_wait(header)
    assert list(caught.value.details) == ["Prefer"]


@pytest.mark.parametrize(
    ("query", "seconds"), [("", None), ("wait=1", 1), ("wait=60", 60), ("other=1", None)]
)
def test_wait_query(query: str, seconds: int | None) -> None:
    assert parse_wait_query(QueryDict(query)) == seconds


@pytest.mark.parametrize(
    "query",
    ["wait=0", "wait=61", "wait=abc", "wait=%00", "wait=99999999999999999999", "wait=",
     "wait=%EF%BC%95", "wait=1&wait=2"],
)  # fmt: skip
def test_a_bad_wait_query_is_a_validation_error(query: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_wait_query(QueryDict(query))
    assert list(caught.value.details) == ["wait"]
