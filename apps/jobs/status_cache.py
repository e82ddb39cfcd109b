"""The job status cache: ``GET /jobs/{id}`` answered from Redis.

Each entry is ``b"<version> <job JSON>"`` under a tenant-scoped key (``job:<client>:<job>``),
exactly the bytes the API answers with. It is written through after every committed change, by
the same code path that writes the database (the ``job_changed`` signal of apps/jobs/services.py),
with a compare-and-set on the version, so two changes committing close together can never leave
the older one cached. The TTL is a safety net for writes lost to a cache outage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction

from apps.core.fastcache import fast_cache, key
from apps.jobs.models import Job
from apps.jobs.representation import job_to_dict

logger = logging.getLogger(__name__)


def job_cache_key(client_id: int, job_id: Any) -> str:
    return key(f"job:{client_id}:{job_id}")


def encode(job: Job, body: bytes | None = None) -> bytes:
    return b"%d " % job.version + (body if body is not None else orjson.dumps(job_to_dict(job)))


def decode(raw: bytes) -> tuple[int, bytes]:
    version, body = raw.split(b" ", 1)
    return int(version), body


def cache_jobs(jobs: Sequence[Job], *, ttl: int | None = None) -> None:
    """Write the jobs' current state to the cache (never over a newer one), for ``ttl`` seconds
    (default JOB_CACHE_SECONDS)."""
    if not jobs:
        return
    try:
        fast_cache().set_if_newer(
            [(job_cache_key(job.client_id, job.pk), job.version, encode(job)) for job in jobs],
            ttl or settings.JOB_CACHE_SECONDS,
        )
    except Exception:
        logger.warning("job status cache write failed", exc_info=True)


def cache_jobs_on_commit(jobs: Iterable[Job]) -> None:
    batch = list(jobs)
    if batch:
        transaction.on_commit(partial(cache_jobs, batch))


def on_job_changed(
    sender: Any, job: Job, previous: str, cached: bool = False, **kwargs: Any
) -> None:
    # A new job has no entry to keep fresh: its first poll caches it. Every later change must
    # be written before the change's response returns (read-your-writes), so it is (by the
    # sender itself when ``cached``: a worker writes its group of changes in one call).
    if previous and not cached:
        cache_jobs_on_commit([job])
