from typing import Any

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.clients.models import ApiClient
        from apps.jobs.store import use_outbox
        from apps.webhooks import outbox

        # Subscribed job changes write their delivery in the change's own statement.
        use_outbox(outbox)

        def forget_secrets(sender: Any, instance: ApiClient, **kwargs: Any) -> None:
            from apps.webhooks.services import forget_secrets

            forget_secrets(instance.pk)

        post_save.connect(forget_secrets, sender=ApiClient, dispatch_uid="webhooks.secrets")
