"""Cache invalidation: a key's cached authentication entry goes when the key or client changes."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.clients.models import ApiClient, ApiKey
from apps.clients.selectors import auth_cache_key, forget_in_process
from apps.core.fastcache import fast_cache


def _forget(key_hashes: list[str]) -> None:
    if key_hashes:
        forget_in_process(key_hashes)
        fast_cache().delete_many([auth_cache_key(h) for h in key_hashes])


def _forget_now_and_after_commit(key_hashes: list[str]) -> None:
    # Now, so this process stops trusting the entry; after commit too, so a concurrent request
    # that re-read the old row before the commit cannot leave a stale entry behind.
    _forget(key_hashes)
    transaction.on_commit(lambda: _forget(key_hashes))


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def _api_key_changed(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    _forget_now_and_after_commit([instance.key_hash])


@receiver(post_save, sender=ApiClient)
@receiver(post_delete, sender=ApiClient)
def _client_changed(sender: Any, instance: ApiClient, **kwargs: Any) -> None:
    if kwargs.get("created"):
        return
    hashes = list(ApiKey.objects.filter(client_id=instance.pk).values_list("key_hash", flat=True))
    _forget_now_and_after_commit(hashes)
