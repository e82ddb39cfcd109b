"""Finished jobs per minute (``FinishedCount``): the rollup the dashboard's charts and failure
rates read, so that a page view never counts millions of job rows.

The step (``finished_counts_roll_up``, run by the maintenance loop every
``DASHBOARD_ROLLUP_EVERY_SECONDS``) recounts a window of whole minutes from the jobs table and
*replaces* their rows, in one transaction:

- **incremental**: the window starts ``DASHBOARD_ROLLUP_RECOUNT_SECONDS`` before the mark (the
  end of the last run) and ends now, at most ``MAX_SPAN`` later; the scan is a range of the
  ``job_finished`` index (finished jobs by ``finished_at``), a few minutes of rows;
- **idempotent**: counts are recomputed from the jobs and written over the window's old rows,
  never added to them, so running the step twice counts each job once;
- **late outcomes counted**: a worker records an attempt's outcome with its next claim, with
  ``finished_at`` set to when the handler ended, so a job may appear finished in a minute that
  an earlier run already counted; the next runs recount that minute as long as it lies within
  the recount window;
- **crash-safe**: the mark row is locked (two schedulers take turns) and moved in the same
  transaction as the counts: a crash leaves both as they were.

Nothing is added to the hot claim and outcome statements: the cost is one index range scan per
run, in the scheduler process. Rows older than ``DASHBOARD_ROLLUP_RETENTION_HOURS`` are deleted
by the same step. A job purged by retention keeps its counts; a minute is never recounted once
it has left the window, so a job retried and finished again counts once per finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from apps.jobs.models import TERMINAL_STATUSES, FinishedCount, FinishedCountMark, Job

# One run catches up at most this much (after the scheduler was down): a bounded scan; the next
# runs go on from there.
MAX_SPAN = timedelta(hours=1)
# Where a first run starts: what the dashboard shows.
FIRST_WINDOW = timedelta(hours=24)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class RollUp:
    start: datetime
    end: datetime
    rows: int
    purged: int


def _statements() -> tuple[str, str, str]:
    quote = connections["default"].ops.quote_name
    counts, jobs = quote(FinishedCount._meta.db_table), quote(Job._meta.db_table)
    terminal = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES))
    # Only quoted table names and the fixed status list are formatted in; values are parameters.
    delete = f'DELETE FROM {counts} WHERE "minute" >= %(start)s AND "minute" < %(end)s'  # noqa: S608
    # The status condition is the job_finished index's predicate: the planner scans its range.
    insert = " ".join(
        [
            f'INSERT INTO {counts} ("minute", "queue", "type", "outcome", "count")',
            'SELECT date_trunc(\'minute\', "finished_at"), "queue", "type", "status", count(*)',
            f'FROM {jobs} WHERE "status" IN ({terminal})',
            'AND "finished_at" >= %(start)s AND "finished_at" < %(end)s GROUP BY 1, 2, 3, 4',
        ]
    )
    purge = f'DELETE FROM {counts} WHERE "minute" < %(keep)s'  # noqa: S608
    return delete, insert, purge


def finished_counts_roll_up(
    *, now: datetime | None = None, recount: timedelta | None = None
) -> RollUp:
    """Recount finished jobs per minute from the mark (less the recount window) to now."""
    now = now or timezone.now()
    recount = (
        timedelta(seconds=settings.DASHBOARD_ROLLUP_RECOUNT_SECONDS) if recount is None else recount
    )
    keep = now - timedelta(hours=settings.DASHBOARD_ROLLUP_RETENTION_HOURS)
    delete, insert, purge = _statements()
    with transaction.atomic():
        mark = FinishedCountMark.objects.select_for_update().order_by("pk").first()
        if mark is None:
            # Two first runs at once: the table lock makes the second wait and see the row.
            table = connections["default"].ops.quote_name(FinishedCountMark._meta.db_table)
            with connections["default"].cursor() as cursor:
                cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            mark = FinishedCountMark.objects.select_for_update().order_by("pk").first()
        if mark is None:
            start = _minute(now - FIRST_WINDOW)
            mark = FinishedCountMark(counted_to=start)
        else:
            start = _minute(min(mark.counted_to, now) - recount)
        start = max(start, _minute(keep))
        end = min(now, start + recount + MAX_SPAN)
        params = {"start": start, "end": end, "keep": keep}
        with connections["default"].cursor() as cursor:
            cursor.execute(delete, params)
            cursor.execute(insert, params)
            rows = max(cursor.rowcount, 0)
            cursor.execute(purge, params)
            purged = max(cursor.rowcount, 0)
        mark.counted_to = end
        mark.save()
    return RollUp(start=start, end=end, rows=rows, purged=purged)
