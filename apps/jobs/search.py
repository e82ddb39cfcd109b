"""The admin's job search: one line of ``word:value`` terms, each one an indexed filter.

The operator console (apps/jobs/admin.py) and its bulk actions (apps/jobs/bulk.py) read the same
terms, so "retry everything matching this" acts on exactly the rows the list shows. Terms
(docs/operations.md, "Finding and fixing jobs in the admin"):

- a job id (a UUID) alone: that job (the admin opens its page directly);
- ``client:NAME`` (or a client's numeric id), ``type:NAME``, ``status:NAME``, ``queue:NAME``;
- ``error:CODE``: the code of the job's last error (``error.code``);
- ``key=value`` or ``meta:key=value``: a metadata entry (the GIN index on metadata);
- ``created>WHEN``, ``created<WHEN``, ``finished>WHEN``, ``finished<WHEN``: WHEN is an ISO date
  or time (UTC unless it names a zone) or an age such as ``-2h``, ``-30m``, ``-7d``;
- ``input:TEXT`` (quote it when it has spaces): jobs whose input contains TEXT. A scan of the
  inputs, so it is only accepted next to a narrowing term: ``client:``, ``type:``, ``error:``,
  or a ``created>`` within the last ``INPUT_SEARCH_MAX_DAYS`` days;
- anything else: an idempotency key or a client's name.

How each stays fast on ten million rows: job ids are UUIDv7, so a ``created`` range is also a
range of the primary key (the list pages on it); ``client:`` rides the ``(client, …, -id)``
indexes; ``finished`` the partial index on finished jobs; ``status:failed`` the partial
``job_failed`` index; ``key=value`` the GIN index; ``type:``/``queue:``/``error:`` alone walk
the primary key newest first until a page is full (see docs/benchmarks.md, ``admin_list``).
"""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.clients.models import ApiClient
from apps.jobs.models import TERMINAL_STATUSES, Job, JobStatus

INPUT_SEARCH_MAX_DAYS = 7
MAX_TERMS = 20
MAX_TERM_LENGTH = 500
# The list filters of the job admin, by their query parameter, that a bulk action honours.
FILTER_PARAMETERS = {
    "status__exact": "status",
    "type": "type",
    "queue": "queue",
    "priority__exact": "priority",
}
_AGE = re.compile(r"^-(\d{1,6})([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RANGE = re.compile(r"^(created|finished)([<>])=?(.+)$")


class SearchError(ValueError):
    """A search the console cannot run as typed; its message says what to type instead."""


@dataclass
class JobSearch:
    """A parsed search line."""

    job_id: uuid.UUID | None = None
    filters: Q = field(default_factory=Q)
    narrowing: bool = False
    input_text: str | None = None
    created_after: datetime | None = None
    words: list[str] = field(default_factory=list)
    # A metadata term: the GIN index finds its few rows, which are then sorted. Ordered by the
    # primary key, the planner (which cannot estimate a containment's selectivity) may instead
    # walk the whole key newest first looking for them: ten seconds on ten million rows.
    sort_matches: bool = False

    def apply(self, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.job_id is not None:
            return queryset.filter(pk=self.job_id)
        queryset = queryset.filter(self.filters)
        for word in self.words:
            # The client's id is looked up first: an OR across the join to clients would be
            # served by no index (a scan of the table), an OR of two indexed columns is.
            client_ids = list(ApiClient.objects.filter(name=word).values_list("pk", flat=True))
            queryset = queryset.filter(Q(idempotency_key=word) | Q(client_id__in=client_ids))
        if self.input_text is not None:
            recent = self.created_after is not None and self.created_after >= timezone.now() - (
                timedelta(days=INPUT_SEARCH_MAX_DAYS, minutes=1)
            )
            if not (self.narrowing or recent):
                raise SearchError(
                    "input: scans job inputs, so add a narrowing term: client:, type:, error: "
                    f"or created>-{INPUT_SEARCH_MAX_DAYS}d (or more recent)."
                )
            queryset = queryset.annotate(_input_text=Cast("input", TextField())).filter(
                _input_text__contains=self.input_text
            )
        return queryset


def _when(text: str) -> datetime:
    if match := _AGE.match(text):
        amount, unit = match.groups()
        return timezone.now() - timedelta(**{_AGE_UNITS[unit]: int(amount)})
    moment = parse_datetime(text)
    if moment is None and (day := parse_date(text)) is not None:
        moment = datetime(day.year, day.month, day.day)
    if moment is None:
        raise SearchError(f"{text!r} is not a time: use 2026-11-30, 2026-11-30T14:00Z or -2h.")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def uuid7_floor(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of ``moment``'s millisecond: job ids at or after it sort after it."""
    ms = max(0, int(moment.timestamp() * 1000))
    return uuid.UUID(int=(min(ms, (1 << 48) - 1) << 80) | (0x7 << 76) | (0b10 << 62))


# Ids are made a little before created_at is stamped; the id range is widened by this so that
# it never drops a row the created_at test keeps.
_ID_SLACK = timedelta(minutes=1)


def _range(search: JobSearch, column: str, op: str, moment: datetime) -> None:
    if column == "created":
        if op == ">":
            search.filters &= Q(pk__gte=uuid7_floor(moment - _ID_SLACK), created_at__gte=moment)
            search.created_after = max(search.created_after or moment, moment)
        else:
            search.filters &= Q(pk__lt=uuid7_floor(moment + _ID_SLACK), created_at__lt=moment)
        return
    # finished_at is set on finished jobs only: naming their statuses selects the partial index.
    search.filters &= Q(status__in=sorted(TERMINAL_STATUSES))
    search.filters &= Q(finished_at__gte=moment) if op == ">" else Q(finished_at__lt=moment)
    search.narrowing = True


def _client(value: str) -> Q:
    """By id, or by name looked up first: ``client_id = …`` is what the (client, …) indexes
    serve; a condition on the joined clients table is not."""
    if value.isdigit():
        return Q(client_id=int(value))
    return Q(client_id__in=list(ApiClient.objects.filter(name=value).values_list("pk", flat=True)))


def parse_search(text: str) -> JobSearch:
    """Parse a search line; SearchError says what is wrong with it."""
    text = text.replace("\x00", "").strip()
    search = JobSearch()
    if not text:
        return search
    try:
        job_id = uuid.UUID(text)
    except ValueError:
        pass
    else:
        search.job_id = job_id
        return search
    try:
        terms = shlex.split(text)
    except ValueError as exc:
        raise SearchError(f"Unbalanced quotes in the search: {exc}.") from None
    if len(terms) > MAX_TERMS:
        raise SearchError(f"At most {MAX_TERMS} terms in one search.")
    for term in terms:
        if len(term) > MAX_TERM_LENGTH:
            raise SearchError(f"A term is longer than {MAX_TERM_LENGTH} characters.")
        _add_term(search, term)
    return search


def _add_term(search: JobSearch, term: str) -> None:
    if match := _RANGE.match(term):
        column, op, value = match.groups()
        _range(search, column, op, _when(value))
        return
    word, sep, value = term.partition(":")
    if sep and word in {"client", "type", "status", "queue", "error", "meta", "input"}:
        if not value:
            raise SearchError(f"{word}: needs a value, e.g. {word}:something.")
        if word == "client":
            search.filters &= _client(value)
            search.narrowing = True
        elif word == "type":
            search.filters &= Q(type=value)
            search.narrowing = True
        elif word == "status":
            if value not in JobStatus.values:
                raise SearchError(f"status: one of {', '.join(JobStatus.values)}.")
            search.filters &= Q(status=value)
        elif word == "queue":
            search.filters &= Q(queue=value)
        elif word == "error":
            search.filters &= Q(error__code=value)
            search.narrowing = True
        elif word == "input":
            search.input_text = value
        else:
            _metadata(search, value)
        return
    if "=" in term:
        _metadata(search, term)
        return
    search.words.append(term)


def _metadata(search: JobSearch, pair: str) -> None:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise SearchError("A metadata term is key=value, e.g. meta:order=1234.")
    # Containment (@>) is what the jsonb_path_ops GIN index answers.
    search.filters &= Q(metadata__contains={key: value})
    search.narrowing = True
    search.sort_matches = True


def matching_jobs(
    params: Mapping[str, Any], queryset: QuerySet[Job] | None = None
) -> QuerySet[Job]:
    """The jobs a console list shows for these query parameters (its filters and its ``q``):
    what a bulk action acts on. Unknown parameters are ignored, as the list ignores them."""
    queryset = Job.objects.all() if queryset is None else queryset
    for parameter, column in FILTER_PARAMETERS.items():
        value = params.get(parameter)
        if value not in (None, ""):
            queryset = queryset.filter(**{column: value})
    return parse_search(str(params.get("q", ""))).apply(queryset)
