"""factory_boy factories for the models tests need in bulk."""

from __future__ import annotations

import factory

from apps.clients.models import ApiClient
from apps.core.ids import uuid7_with_time
from apps.jobs.models import Job, JobStatus


class ApiClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiClient

    name = factory.Sequence(lambda n: f"client-{n}")


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    client = factory.SubFactory(ApiClientFactory)
    type = "diagnostics.echo"
    status = JobStatus.QUEUED
    input = factory.LazyFunction(
        lambda: {
            "message": "hello",
            "sleep_seconds": 0,
            "fail_times": 0,
            "fail_permanently": False,
            "progress_steps": 0,
        }
    )
    queue = "default"
    max_attempts = 3
    timeout_seconds = 300

    @factory.lazy_attribute
    def created_at(self):  # type: ignore[no-untyped-def]
        return uuid7_with_time()[1]

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        job_id, _created_at = uuid7_with_time()
        kwargs.setdefault("id", job_id)
        return super()._create(model_class, *args, **kwargs)
