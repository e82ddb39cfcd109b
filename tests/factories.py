"""factory_boy factories for the models tests need in bulk."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from apps.clients.models import ApiClient
from apps.core.ids import uuid7_with_time
from apps.jobs.models import Job, JobStatus
from apps.schedules.models import Schedule
from apps.staff.roles import ROLE_GROUPS
from apps.webhooks.models import DeliveryStatus, WebhookDelivery


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


class WebhookDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookDelivery

    job = factory.SubFactory(JobFactory, status=JobStatus.SUCCEEDED)
    client_id = factory.LazyAttribute(lambda d: d.job.client_id)
    event_type = "job.succeeded"
    sequence = 1
    webhook_id = factory.Sequence(lambda n: f"msg_test{n}")
    url = "http://127.0.0.1:9/hook"
    job_snapshot = factory.LazyFunction(dict)
    status = DeliveryStatus.FAILED
    next_attempt_at = factory.LazyFunction(timezone.now)
    created_at = factory.LazyFunction(timezone.now)


class ScheduleFactory(factory.django.DjangoModelFactory):
    """A schedule as the API would store it (every minute, UTC, an echo job), due next minute."""

    class Meta:
        model = Schedule

    client = factory.SubFactory(ApiClientFactory)
    name = factory.Sequence(lambda n: f"schedule-{n}")
    cron = "* * * * *"
    job = factory.LazyFunction(lambda: {"type": "diagnostics.echo", "input": {"message": "hi"}})
    next_run_at = factory.LazyFunction(
        lambda: timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    )
    created_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyFunction(timezone.now)
    timezone = "UTC"  # after the uses of django.utils.timezone above, which it shadows


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A staff user with one of the roles (``role="operator"``), or none (``role=None``)."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff-{n}")
    is_staff = True

    @factory.post_generation
    def role(self, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create and extracted:
            self.groups.add(Group.objects.get(name=ROLE_GROUPS[extracted]))
