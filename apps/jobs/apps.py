from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.clients.models import ApiClient
        from apps.core.metrics import register_scrape_collector
        from apps.jobs import instrumentation
        from apps.jobs.holds import on_client_saved
        from apps.jobs.registry import load_job_type_modules
        from apps.jobs.services import job_changed, on_client_created
        from apps.jobs.status_cache import on_job_changed

        load_job_type_modules(settings.CONVEYOR_JOB_TYPE_MODULES)
        if settings.CONVEYOR_TASK_MODULES:
            from apps.jobs.django_tasks import register_task_modules

            register_task_modules(settings.CONVEYOR_TASK_MODULES)
        job_changed.connect(on_job_changed, dispatch_uid="jobs.status_cache")
        post_save.connect(on_client_saved, sender=ApiClient, dispatch_uid="jobs.holds")
        post_save.connect(on_client_created, sender=ApiClient, dispatch_uid="jobs.counts")
        job_changed.connect(instrumentation.on_job_changed, dispatch_uid="jobs.instrumentation")
        register_scrape_collector(instrumentation.QueueCollector())
        if settings.BROKER_SCHEME == "filesystem":
            # The embedded broker's folders; kombu's filesystem transport does not create them.
            for option in (
                "data_folder_in",
                "data_folder_out",
                "processed_folder",
                "control_folder",
            ):
                Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS[option])).mkdir(
                    parents=True, exist_ok=True
                )
