"""Delivering webhooks: claim a due delivery, send it signed, record the attempt.

Deliveries are a queue in the database, drained by the ``webhooks`` worker pool the same way
jobs are (a broker message only wakes a worker; see apps/jobs/dispatch.py). A claim pushes the
delivery's ``next_attempt_at`` one lease into the future instead of locking it, so a worker that
dies mid-send simply lets the lease run out and another worker sends it again, with the same
``webhook-id`` (receivers deduplicate on it).

No client can stall another's webhooks:

- an attempt has a wall-clock deadline a receiver cannot stretch (transport.py);
- the claim skips a client that already has ``WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT`` unexpired
  leases, so one client's slow receivers hold at most that many of the pool's threads, and it
  skips inactive clients (their deliveries stay pending, and resume if the client is
  reactivated);
- whatever goes wrong in an attempt, an exception included, is recorded as a failed attempt and
  retried with backoff, never left to the lease's expiry;
- each claim gives the delivery a fresh ``lease_token``; an outcome is written only by the
  attempt that still holds it, so an attempt that outlived its lease (and whose delivery was
  claimed again) changes nothing.

Outcomes (API.md, "Webhooks"): a 2xx within the timeout is delivered; 410 stops that event;
anything else — 429, 5xx, other 4xx, a redirect, a timeout, a refused connection — is retried
with exponential backoff and jitter (``Retry-After`` honoured) until ``WEBHOOK_RETRY_HOURS``
after the event, then the delivery is failed. Every attempt is recorded.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import orjson
from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.core.metrics import webhook_deliveries_total, webhook_delivery_seconds
from apps.jobs.queues import WEBHOOKS_QUEUE
from apps.jobs.representation import job_to_dict, rfc3339
from apps.jobs.webhook_events import JOB_PROGRESS, TERMINAL_WEBHOOK_EVENTS
from apps.webhooks import signing, transport
from apps.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from apps.webhooks.outbox import job_from_snapshot

logger = logging.getLogger("conveyor.webhooks")


def render(delivery: WebhookDelivery) -> bytes:
    """The request body; the same bytes on every attempt (the signature covers them)."""
    return orjson.dumps(
        {
            "type": delivery.event_type,
            "timestamp": rfc3339(delivery.created_at),
            "data": job_to_dict(job_from_snapshot(delivery.job_snapshot)),
        }
    )


_SECRETS_TTL = 5.0
_secrets: dict[int, tuple[float, str, str, datetime | None]] = {}


def signing_secrets(client_id: int, now: datetime) -> list[str]:
    """The client's current secret, and its previous one during a rotation window.

    Remembered for a few seconds per process: a rotation reaches every webhook worker within
    that time, and meanwhile the previous secret (which keeps signing for a day) still does.
    """
    cached = _secrets.get(client_id)
    if cached is None or cached[0] < time.monotonic():
        client = ApiClient.objects.only(
            "webhook_secret", "previous_webhook_secret", "previous_webhook_secret_expires_at"
        ).get(pk=client_id)
        cached = (
            time.monotonic() + _SECRETS_TTL,
            client.webhook_secret,
            client.previous_webhook_secret,
            client.previous_webhook_secret_expires_at,
        )
        _secrets[client_id] = cached
    _, current, previous, expires = cached
    secrets = [current]
    if previous and expires is not None and expires > now:
        secrets.append(previous)
    return secrets


def forget_secrets(client_id: int) -> None:
    _secrets.pop(client_id, None)


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter, capped; never sooner than Retry-After."""
    base, cap = settings.WEBHOOK_RETRY_BASE_SECONDS, settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def delivery_claim_next(*, now: datetime | None = None) -> WebhookDelivery | None:
    """Lease the most overdue pending delivery to this worker (None when nothing is due).

    Skipped: deliveries of inactive clients, and of clients that already have
    ``WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT`` unexpired leases. The claim sets a fresh
    ``lease_token``: only the attempt holding it writes the outcome.

    Claims are serialised by a transaction-level advisory lock taken before the claim
    statement, so each claim's snapshot sees every lease committed before it: without it,
    workers woken together all count the same leases, all take the same client's oldest
    deliveries, and can keep doing so in lockstep while another client's delivery waits. The
    lock is held for one short statement (a claim is well under a millisecond of database time;
    one pool sends a few hundred deliveries a second).

    A lease lost in a database crash only means the delivery is sent again, with the same
    webhook-id: so the claim commits without waiting for its WAL flush (as a job's claim does).
    """
    now = now or timezone.now()
    lease = now + timedelta(seconds=lease_seconds())
    token = uuid.uuid4()
    cap = max(1, settings.WEBHOOK_MAX_IN_FLIGHT_PER_CLIENT)
    using = router.db_for_write(WebhookDelivery)
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_ID])
        rows = list(
            WebhookDelivery.objects.db_manager(using).raw(
                _claim_sql(), [lease, lease, token, now, now, cap]
            )
        )
    return rows[0] if rows else None


CLAIM_LOCK_ID = 0x0C0E7E71  # pg_advisory_xact_lock key of delivery_claim_next


def lease_seconds() -> float:
    """How long a claim holds a delivery: longer than any attempt can take (the transport's
    deadline bounds the request; the margin covers rendering, signing and recording)."""
    return settings.WEBHOOK_TIMEOUT_SECONDS + 20


@cache
def _claim_sql() -> str:
    # 'pending' is a literal, not a parameter, so that a generic plan still matches the partial
    # indexes delivery_due and delivery_in_flight (status = 'pending'). Both NOT IN lists are
    # computed once per statement (hashed subplans): the inactive clients, and the clients
    # whose unexpired leases (a range scan of delivery_in_flight, as long as the pool is busy)
    # reach the cap. The due scan then walks delivery_due in order, passing over the due rows
    # of those clients.
    table = WebhookDelivery._meta.db_table
    clients = ApiClient._meta.db_table
    columns = ", ".join(f'"{f.column}"' for f in WebhookDelivery._meta.concrete_fields)
    pending = DeliveryStatus.PENDING.value
    return (
        f'UPDATE "{table}" SET "next_attempt_at" = %s, "leased_until" = %s, "lease_token" = %s, '
        f'"attempts" = "attempts" + 1 '
        f'WHERE "id" = (SELECT "id" FROM "{table}" WHERE "status" = \'{pending}\' '
        f'AND "next_attempt_at" <= %s '
        f'AND "client_id" NOT IN (SELECT "id" FROM "{clients}" WHERE NOT "is_active") '
        f'AND "client_id" NOT IN (SELECT "client_id" FROM "{table}" '
        f'WHERE "status" = \'{pending}\' AND "leased_until" IS NOT NULL '
        f'AND "leased_until" > %s GROUP BY "client_id" HAVING count(*) >= %s) '
        f'ORDER BY "next_attempt_at", "id" '
        f"LIMIT 1 FOR UPDATE SKIP LOCKED) AND \"status\" = '{pending}' "
        f"RETURNING {columns}, set_config('synchronous_commit', 'off', true) AS async_commit"
    )


def _overtaken(delivery: WebhookDelivery) -> bool:
    """A progress event is never sent after the job's terminal event: skip stale progress."""
    if delivery.event_type != JOB_PROGRESS:
        return False
    return WebhookDelivery.objects.filter(
        job_id=delivery.job_id,
        sequence__gt=delivery.sequence,
        event_type__in=TERMINAL_WEBHOOK_EVENTS,
    ).exists()


def delivery_attempt(delivery: WebhookDelivery) -> str:
    """Send a claimed delivery once and record the outcome. Returns the delivery's status
    (``stale`` when its lease was taken over meanwhile and nothing was written).

    Whatever goes wrong here (a snapshot that fails to render, a signing secret that cannot be
    read, a bug) is an attempt like a refused connection: recorded, then retried with backoff.
    Its row names only the exception's type (attempts are shown to the client); the log has
    the rest.
    """
    now = timezone.now()
    started = time.perf_counter()
    try:
        if _overtaken(delivery):
            skipped = _fenced(delivery).update(
                status=DeliveryStatus.SKIPPED,
                last_error="overtaken by the job's terminal event",
                lease_token=None,
                leased_until=None,
            )
            return DeliveryStatus.SKIPPED if skipped else STALE
        answer = _send(delivery, now)
    except Exception as exc:
        logger.exception(
            "webhook %s %s: the attempt raised %s", delivery.webhook_id, delivery.event_type, exc
        )
        answer = transport.Answer(
            None,
            round((time.perf_counter() - started) * 1000, 2),
            error=f"internal error: {type(exc).__name__}",
        )
    outcome, update = _outcome(delivery, answer)
    recorded = _record(
        delivery.pk,
        delivery.lease_token,
        {
            "at": now,
            "status_code": answer.status_code,
            "latency_ms": answer.latency_ms,
            "outcome": outcome,
            "error": answer.error[:500],
            "response_excerpt": answer.excerpt,
        },
        update,
    )
    summary = (
        delivery.webhook_id,
        delivery.event_type,
        delivery.url,
        outcome,
        answer.status_code or answer.error,
        answer.latency_ms,
    )
    if not recorded:
        logger.warning(
            "webhook %s %s to %s: %s (%s, %.0f ms), but its lease was taken over: not recorded",
            *summary,
        )
        return STALE
    if settings.METRICS_ENABLED:
        webhook_deliveries_total.labels(outcome).inc()
        webhook_delivery_seconds.observe(answer.latency_ms / 1000)
    log = logger.info if outcome == DeliveryStatus.DELIVERED else logger.warning
    log("webhook %s %s to %s: %s (%s, %.0f ms)", *summary)
    return str(update.get("status", DeliveryStatus.PENDING))


def _send(delivery: WebhookDelivery, now: datetime) -> transport.Answer:
    """POST the delivery, signed, within the transport's deadline."""
    body = render(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            signing_secrets(delivery.client_id, now), delivery.webhook_id, timestamp, body
        ),
    }
    if delivery.request_id:
        headers["X-Request-ID"] = delivery.request_id
    return transport.post(delivery.url, body, headers)


def _outcome(delivery: WebhookDelivery, answer: transport.Answer) -> tuple[str, dict[str, Any]]:
    """What an answer means for the delivery: (the attempt's outcome, the delivery's changes)."""
    status_code = answer.status_code
    update: dict[str, Any] = {"last_status_code": status_code, "last_error": answer.error}
    outcome: str
    if status_code is not None and 200 <= status_code < 300:
        outcome = DeliveryStatus.DELIVERED
        update.update(status=outcome, delivered_at=timezone.now())
    elif status_code == 410:
        outcome = DeliveryStatus.GONE
        update.update(status=outcome)
    else:
        delay = retry_delay(delivery.attempts, answer.retry_after)
        next_attempt = timezone.now() + timedelta(seconds=delay)
        window_end = delivery.created_at + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
        if next_attempt > window_end:
            outcome = DeliveryStatus.FAILED
            update.update(status=outcome)
        else:
            outcome = "retry"
            update.update(next_attempt_at=next_attempt)
        if not answer.error:
            update["last_error"] = f"HTTP {status_code}"
    update.update(lease_token=None, leased_until=None)
    return outcome, update


STALE = "stale"  # delivery_attempt: the lease was taken over, nothing was written


def _fenced(delivery: WebhookDelivery) -> Any:
    """The delivery, as long as this attempt still holds its lease."""
    return WebhookDelivery.objects.filter(
        pk=delivery.pk, lease_token=delivery.lease_token, status=DeliveryStatus.PENDING
    )


def _record(
    delivery_id: int, lease_token: Any, attempt: dict[str, Any], update: dict[str, Any]
) -> bool:
    """Write the attempt's row and the delivery's new state together, in one statement (a
    data-modifying CTE, its own transaction), only if the lease ``lease_token`` is still the
    delivery's. False when nothing was written."""
    if lease_token is None:
        return False
    sql = _record_sql(tuple(attempt), tuple(update))
    with connections[router.db_for_write(WebhookDelivery)].cursor() as cursor:
        cursor.execute(sql, [*update.values(), delivery_id, lease_token, *attempt.values()])
        return cursor.rowcount == 1


@cache
def _record_sql(attempt_fields: tuple[str, ...], update_fields: tuple[str, ...]) -> str:
    def column(model: Any, name: str) -> str:
        return f'"{model._meta.get_field(name).column}"'

    attempts = WebhookAttempt._meta.db_table
    deliveries = WebhookDelivery._meta.db_table
    insert_columns = ", ".join(
        column(WebhookAttempt, name) for name in ("delivery", *attempt_fields)
    )
    placeholders = ", ".join(["%s"] * len(attempt_fields))
    assignments = ", ".join(f"{column(WebhookDelivery, name)} = %s" for name in update_fields)
    pending = DeliveryStatus.PENDING.value
    return (
        f'WITH d AS (UPDATE "{deliveries}" SET {assignments} WHERE "id" = %s '
        f'AND "lease_token" = %s AND "status" = \'{pending}\' RETURNING "id") '
        f'INSERT INTO "{attempts}" ({insert_columns}) SELECT d."id", {placeholders} FROM d'
    )


def delivery_redeliver(*, delivery: WebhookDelivery) -> None:
    """Send a delivery again now (admin), with the same webhook-id, whatever its status."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now()
    )
    from apps.jobs.dispatch import publish_wakeups

    transaction.on_commit(lambda: publish_wakeups({WEBHOOKS_QUEUE: 1}))


def deliveries_redeliver(*, ids: list[int]) -> int:
    """Send these deliveries again now (the admin's bulk redelivery), same webhook-ids: one
    UPDATE and one wake-up. Returns how many were set pending."""
    count = WebhookDelivery.objects.filter(pk__in=ids).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now()
    )
    if count:
        from apps.jobs.dispatch import publish_wakeups

        transaction.on_commit(lambda: publish_wakeups({WEBHOOKS_QUEUE: 1}))
    return count


def due_deliveries_exist(now: datetime | None = None) -> bool:
    return WebhookDelivery.objects.filter(
        Q(status=DeliveryStatus.PENDING) & Q(next_attempt_at__lte=now or timezone.now())
    ).exists()
