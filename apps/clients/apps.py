from django.apps import AppConfig


class ClientsConfig(AppConfig):
    name = "apps.clients"
    label = "clients"
    verbose_name = "API clients"

    def ready(self) -> None:
        from django.conf import settings

        from apps.clients import signals  # noqa: F401  (connects cache invalidation)
        from apps.clients.limits import validate_rates

        # A typo in RATE_LIMITS fails the start, not the first request.
        validate_rates(settings.RATE_LIMITS)
