"""Prometheus metrics: the metric objects, the cheap per-request hook, and the exposition.

prometheus-client runs in multiprocess mode wherever apps/core/metrics_dirs.py prepared a samples
directory (gunicorn, Celery workers): every process writes its own memory-mapped samples and the
scrape adds them up. Elsewhere (tests, management commands) values live in the process.

Metrics that describe the whole deployment rather than one process (queue depths, live workers)
are computed when the web's ``/metrics`` is scraped, by collectors that apps register with
``register_scrape_collector``; worker metrics ports leave them out so that nothing is reported
twice.

The webhook delivery and schedule metrics are defined here for their apps to import:
``webhook_deliveries_total.labels(outcome).inc()`` and ``webhook_delivery_seconds.observe(s)``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Latency buckets from 1 ms (a cached poll) to 10 s (the gunicorn timeout is 30 s).
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Job run and wait times span milliseconds (echo) to an hour (the longest timeout).
_JOB_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip

http_request_duration_seconds = Histogram(
    "conveyor_http_request_duration_seconds",
    "HTTP requests by route pattern, method and status, and how long they took.",
    ["route", "method", "status"],
    buckets=_HTTP_BUCKETS,
)
jobs_submitted_total = Counter(
    "conveyor_jobs_submitted",
    "Jobs accepted, by type and initial status (queued or scheduled).",
    ["type", "status"],
)
jobs_finished_total = Counter(
    "conveyor_jobs_finished",
    "Jobs that reached a terminal status (succeeded, failed, canceled), by type.",
    ["type", "status"],
)
job_run_seconds = Histogram(
    "conveyor_job_run_seconds",
    "How long job attempts ran (claim to outcome), by type.",
    ["type"],
    buckets=_JOB_BUCKETS,
)
job_queue_wait_seconds = Histogram(
    "conveyor_job_queue_wait_seconds",
    "How long jobs waited in the queue before a worker claimed them, by type.",
    ["type"],
    buckets=_JOB_BUCKETS,
)
webhook_deliveries_total = Counter(
    "conveyor_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retry, gone, failed, skipped).",
    ["outcome"],
)
webhook_delivery_seconds = Histogram(
    "conveyor_webhook_delivery_seconds",
    "How long webhook delivery attempts took, until the receiver's answer or the timeout.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# Schedules (apps/schedules/instrumentation.py): each tick the scheduler consumes either fires a
# job or is skipped, and how late it was handled; the scrape adds the most overdue schedule.
schedules_fired_total = Counter(
    "conveyor_schedules_fired",
    "Schedule ticks that submitted a job (the firing step; POST /schedules/{id}/trigger is not "
    "a tick).",
)
schedules_skipped_total = Counter(
    "conveyor_schedules_skipped",
    "Schedule ticks consumed without a job, by reason (overlap, quota_exceeded, invalid_job).",
    ["reason"],
)
schedule_lag_seconds = Histogram(
    "conveyor_schedule_lag_seconds",
    "How late the scheduler handled each tick: when it fired or skipped it minus when it was due.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)

# --- The per-request hook -----------------------------------------------------------------------
# labels() validates and locks on every call; the children are looked up in a plain dict instead.
# Keys are bounded: routes are the URLconf's patterns ("unmatched" for anything else) and methods
# outside the known set are counted as "other", so a scanner cannot grow the series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_request_children: dict[tuple[str, str, int], Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    if method not in _METHODS:
        method = "other"
    key = (route, method, status)
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = http_request_duration_seconds.labels(
            route, method, str(status)
        )
    child.observe(seconds)


class LabelledChildren:
    """``metric.labels(*values)`` remembered per label tuple (hot paths call these per job)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


# --- Exposition -------------------------------------------------------------------------------


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


_scrape_collectors: list[Collector] = []


def register_scrape_collector(collector: Collector) -> None:
    """Add a collector that runs when the web's /metrics is scraped (deployment-wide values)."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


def multiprocess_dir() -> str | None:
    """The samples directory when this process runs in multiprocess mode, else None."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Union:
    def __init__(self, collectors: Sequence[Collector]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def render(*, deployment: bool) -> bytes:
    """The Prometheus text exposition of this process group, plus the deployment-wide
    collectors when ``deployment`` (the web's /metrics)."""
    base: Collector
    path = multiprocess_dir()
    if path:
        from prometheus_client.multiprocess import MultiProcessCollector

        base = MultiProcessCollector(None, path=path)
    else:
        base = REGISTRY
    collectors = [base, *_scrape_collectors] if deployment else [base]
    return generate_latest(_Union(collectors))


# --- Access -----------------------------------------------------------------------------------
# Requests that came through a proxy carry one of these; the socket address is then the proxy's,
# which says nothing about the caller, so only the token lets them in.
_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@cache
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allowed if n.strip())


def access_allowed(
    environ: Mapping[str, Any], *, allowed_networks: Sequence[str], token: str
) -> bool:
    """May this request read metrics? Yes with ``Authorization: Bearer <METRICS_TOKEN>``, or
    when it comes straight (no proxy headers) from an allowed network."""
    header = str(environ.get("HTTP_AUTHORIZATION") or "")
    if (
        token
        and header[:7].lower() == "bearer "
        and hmac.compare_digest(header[7:].strip().encode(), token.encode())
    ):
        return True
    if any(environ.get(name) for name in _PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(str(environ.get("REMOTE_ADDR", "")).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(allowed_networks)))
