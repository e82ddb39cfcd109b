"""What schedules tell the metrics (apps/core/metrics.py, documented in docs/operations.md).

- ``conveyor_schedules_fired_total`` and ``conveyor_schedules_skipped_total{reason}``: the ticks
  the firing step consumed (apps/schedules/firing.py), counted once their transaction commits
  (a batch rolled back consumed nothing), in the scheduler process;
- ``conveyor_schedule_lag_seconds``: per consumed tick, how long after its due time the
  scheduler handled it (the maintenance step's interval, plus any time no scheduler ran);
- at scrape time (the web's /metrics): ``conveyor_schedules_overdue_seconds``, how long the most
  overdue due schedule has waited. The histogram only hears from a running scheduler; this gauge
  grows when none runs, which is what to alert on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import connections, transaction
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from apps.core import metrics

logger = logging.getLogger("conveyor.maintenance")

_skipped = metrics.LabelledChildren(metrics.schedules_skipped_total)
SCRAPE_STATEMENT_TIMEOUT_MS = 2000


def record_tick(*, due: datetime | None, now: datetime, skip_reason: str | None) -> None:
    """Count a consumed tick (fired when ``skip_reason`` is None) once the batch commits."""
    if settings.METRICS_ENABLED:
        lag = max(0.0, (now - due).total_seconds()) if due is not None else None
        transaction.on_commit(partial(_count_tick, lag, skip_reason))


def _count_tick(lag: float | None, skip_reason: str | None) -> None:
    if skip_reason is None:
        metrics.schedules_fired_total.inc()
    else:
        _skipped(skip_reason).inc()
    if lag is not None:
        metrics.schedule_lag_seconds.observe(lag)


class OverdueCollector:
    """The most overdue schedule, read when Prometheus scrapes the web: one index scan of
    enabled schedules by next tick (``schedule_due``), with a statement timeout."""

    def collect(self) -> Iterator[Metric]:
        from apps.schedules.models import Schedule

        try:
            with transaction.atomic(using="default"):
                with connections["default"].cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
                oldest = (
                    Schedule.objects.filter(enabled=True, client__is_active=True)
                    .order_by("next_run_at")
                    .values_list("next_run_at", flat=True)
                    .first()
                )
        except Exception:
            logger.warning("metrics: could not read the schedules' next ticks", exc_info=True)
            return
        overdue = GaugeMetricFamily(
            "conveyor_schedules_overdue_seconds",
            "How long the most overdue enabled schedule has been due (0 when none is): grows "
            "while no scheduler fires schedules.",
        )
        waited = time.time() - oldest.timestamp() if oldest is not None else 0.0
        overdue.add_metric([], max(0.0, waited))
        yield overdue
