"""Jobs of an inactive client wait: held while the client is inactive, released when it is
active again.

Deactivating a client (``is_active`` off, apps/clients/services.py or the admin) refuses its
keys at once (401) and holds its unfinished jobs: they keep their status, and no worker claims
them (the claim skips held jobs through its index, and re-checks the client's flag for jobs
queued in the moment before their hold). A job running at that moment runs to its end. Nothing
is canceled: reactivating the client releases its jobs and wakes their pools, and they run in
their usual order.

Holding follows every save of a client (a signal, connected in apps/jobs/apps.py), and the
maintenance loop repeats it (``jobs_sync_holds``) for a change that bypassed the model (a
queryset update) and for jobs that arrived in the moment between the deactivation and its hold
(a submission authenticated just before).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from django.db import transaction
from django.db.models import Q

from apps.clients.models import ApiClient
from apps.jobs.dispatch import publish_on_commit_counts
from apps.jobs.models import ACTIVE_STATUSES, Job, JobStatus

logger = logging.getLogger("conveyor.holds")


def _release(jobs: Any) -> int:
    """Release these held jobs and wake the pools of those that are queued."""
    with transaction.atomic():
        rows = list(
            Job.objects.filter(jobs, held=True)
            .select_for_update()
            .values_list("pk", "queue", "status")
        )
        if not rows:
            return 0
        Job.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(held=False)
        publish_on_commit_counts(
            Counter(queue for _, queue, status in rows if status == JobStatus.QUEUED)
        )
    return len(rows)


def _hold(jobs: Any) -> int:
    return Job.objects.filter(jobs, held=False, status__in=ACTIVE_STATUSES).update(held=True)


def jobs_hold_for_client(*, client: ApiClient) -> int:
    """Hold the unfinished jobs of ``client`` if it is inactive, release them if it is active.
    Returns how many jobs changed."""
    if client.is_active:
        released = _release(Q(client_id=client.pk))
        if released:
            logger.info("client %s active again: %s job(s) released", client.pk, released)
        return released
    held = _hold(Q(client_id=client.pk))
    if held:
        logger.info("client %s inactive: %s job(s) held", client.pk, held)
    return held


def jobs_sync_holds() -> int:
    """Hold what inactive clients have unheld, release what active clients have held (the
    maintenance loop; cheap: inactive clients are few, and held jobs have their own index)."""
    inactive = ApiClient.objects.filter(is_active=False).values("pk")
    active = ApiClient.objects.filter(is_active=True).values("pk")
    changed = _hold(Q(client_id__in=inactive)) + _release(Q(client_id__in=active))
    if changed:
        logger.info("holds of %s job(s) brought in line with their clients", changed)
    return changed


def on_client_saved(
    sender: Any, instance: ApiClient, created: bool = False, update_fields: Any = None, **_: Any
) -> None:
    if created or (update_fields is not None and "is_active" not in update_fields):
        return
    jobs_hold_for_client(client=instance)
