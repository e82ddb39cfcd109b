"""Writes for API clients and keys."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.clients.keys import DISPLAY_PREFIX_LENGTH, generate_api_key, hash_api_key
from apps.clients.models import ApiClient, ApiKey, new_webhook_secret
from apps.clients.selectors import auth_cache_key, refusal
from apps.core.errors import ValidationFailed
from apps.core.fastcache import fast_cache


def api_key_create(*, client: ApiClient, name: str = "") -> tuple[ApiKey, str]:
    """Create a key for ``client``. Returns the row and the plain key, which is not stored."""
    plain = generate_api_key()
    key = ApiKey.objects.create(
        client=client,
        name=name,
        prefix=plain[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(plain),
    )
    return key, plain


@transaction.atomic
def client_create(
    *,
    name: str,
    unlimited: bool = False,
    max_running_jobs: int | None = None,
    weight: int = 1,
) -> tuple[ApiClient, str]:
    """Create a client with one API key. Returns the client and the plain key.

    ``max_running_jobs`` None keeps the deployment default (DEFAULT_MAX_RUNNING_JOBS)."""
    name = name.strip()
    if not name:
        raise ValidationFailed("A client needs a name.", details={"name": ["Required."]})
    if ApiClient.objects.filter(name=name).exists():
        raise ValidationFailed(
            f"A client named {name!r} exists already.", details={"name": ["Already taken."]}
        )
    problems = {}
    if max_running_jobs is not None and max_running_jobs < 1:
        problems["max_running_jobs"] = ["Must be at least 1."]
    if not 1 <= weight <= 1000:
        problems["weight"] = ["Must be between 1 and 1000."]
    if problems:
        raise ValidationFailed("Invalid limits.", details=problems)
    client = ApiClient(name=name, unlimited=unlimited, weight=weight)
    if max_running_jobs is not None:
        client.max_running_jobs = max_running_jobs
    client.save()
    _, plain = api_key_create(client=client, name="initial")
    return client, plain


def api_key_revoke(*, key: ApiKey) -> None:
    """Revoke a key: every web process refuses it (401) within ``API_KEY_LOCAL_SECONDS`` (2 s;
    the revoking process at once). See apps/clients/selectors.py."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def client_set_active(*, client: ApiClient, active: bool) -> None:
    """Deactivate (or reactivate) a client.

    Deactivated: its keys get 401 within ``API_KEY_LOCAL_SECONDS`` in every web process (the
    cached entries are deleted at once, apps/clients/signals.py), and its unfinished jobs are
    held, not started, until it is active again (apps/jobs/holds.py); a job already running
    runs to its end. Reactivated: its keys work again and its jobs resume.
    """
    if client.is_active != active:
        client.is_active = active
        client.save(update_fields=["is_active"])


# A refusal written by the maintenance loop is short-lived: it only has to outlast a stale entry
# it overwrote, and a client reactivated meanwhile must not stay refused for long.
_SWEEP_REFUSAL_SECONDS = 10
_SWEEP_MAX_KEYS = 5000


def api_keys_refuse_in_cache(*, now: datetime | None = None) -> int:
    """Write the cache's refusal for every key that may still have a stale "valid" entry: keys
    revoked within ``API_KEY_CACHE_SECONDS`` (an older entry has expired by now) and keys of
    inactive clients. The revocation wrote it already unless the cache was unreachable from
    its process; this repairs that within one maintenance tick of the cache answering. Returns
    how many keys were refused."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.API_KEY_CACHE_SECONDS)
    hashes = list(
        ApiKey.objects.filter(Q(revoked_at__gte=since) | Q(client__is_active=False))
        .order_by(F("revoked_at").desc(nulls_last=True))
        .values_list("key_hash", flat=True)[:_SWEEP_MAX_KEYS]
    )
    if hashes:
        fast_cache().set_many(
            [auth_cache_key(h) for h in hashes], refusal(), _SWEEP_REFUSAL_SECONDS
        )
    return len(hashes)


def webhook_secret_rotate(*, client: ApiClient) -> str:
    """Give ``client`` a new webhook secret, returned once. For
    ``WEBHOOK_SECRET_OVERLAP_HOURS`` (24 h) webhooks carry signatures by both the new and the
    previous secret, so receivers can switch whenever they like within that window."""
    client.previous_webhook_secret = client.webhook_secret
    client.previous_webhook_secret_expires_at = timezone.now() + timedelta(
        hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS
    )
    client.webhook_secret = new_webhook_secret()
    client.save(
        update_fields=[
            "webhook_secret",
            "previous_webhook_secret",
            "previous_webhook_secret_expires_at",
        ]
    )
    return client.webhook_secret
