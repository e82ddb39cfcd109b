"""Cache invalidation: a key's cached authentication entry goes when the key or client changes,
and is replaced by a refusal when the change refuses the key (revoked, client deactivated or
deleted): see apps/clients/selectors.py for why that bounds a revocation.

A cache that cannot be reached is logged, not raised: the change is committed in the database
(which every process falls back to while the cache is down), and the maintenance loop writes the
refusals again (``api_keys_refuse_in_cache``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.clients.models import ApiClient, ApiKey
from apps.clients.selectors import auth_cache_key, forget_in_process, refusal
from apps.core.fastcache import fast_cache

logger = logging.getLogger(__name__)


def _forget(key_hashes: list[str]) -> None:
    forget_in_process(key_hashes)
    try:
        fast_cache().delete_many([auth_cache_key(h) for h in key_hashes])
    except Exception:
        logger.warning("auth cache: could not delete %s entries", len(key_hashes), exc_info=True)


def _refuse(key_hashes: list[str]) -> None:
    forget_in_process(key_hashes)
    try:
        fast_cache().set_many(
            [auth_cache_key(h) for h in key_hashes], refusal(), settings.API_KEY_CACHE_SECONDS
        )
    except Exception:
        logger.warning("auth cache: could not refuse %s keys", len(key_hashes), exc_info=True)


def _changed(key_hashes: list[str], *, refused: bool) -> None:
    if not key_hashes:
        return
    # Forgotten now, so this process stops trusting the entry (harmless if the change rolls
    # back); refused or forgotten again once committed, so that a concurrent request that read
    # the old row cannot leave a stale entry behind (its fill never overwrites, see selectors).
    _forget(key_hashes)
    transaction.on_commit(lambda: (_refuse if refused else _forget)(key_hashes))


@receiver(post_save, sender=ApiKey)
def _api_key_saved(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    _changed([instance.key_hash], refused=instance.revoked_at is not None)


@receiver(post_delete, sender=ApiKey)
def _api_key_deleted(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    _changed([instance.key_hash], refused=True)


@receiver(post_save, sender=ApiClient)
def _client_saved(sender: Any, instance: ApiClient, **kwargs: Any) -> None:
    if kwargs.get("created"):
        return
    hashes = list(ApiKey.objects.filter(client_id=instance.pk).values_list("key_hash", flat=True))
    _changed(hashes, refused=not instance.is_active)


@receiver(post_delete, sender=ApiClient)
def _client_deleted(sender: Any, instance: ApiClient, **kwargs: Any) -> None:
    hashes = list(ApiKey.objects.filter(client_id=instance.pk).values_list("key_hash", flat=True))
    _changed(hashes, refused=True)
