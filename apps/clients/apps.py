from django.apps import AppConfig


class ClientsConfig(AppConfig):
    name = "apps.clients"
    label = "clients"
    verbose_name = "API clients"

    def ready(self) -> None:
        from apps.clients import signals  # noqa: F401  (connects cache invalidation)
