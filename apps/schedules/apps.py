from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "apps.schedules"
    label = "schedules"
    verbose_name = "Schedules"

    def ready(self) -> None:
        from apps.core.metrics import register_scrape_collector
        from apps.schedules.instrumentation import OverdueCollector

        register_scrape_collector(OverdueCollector())
