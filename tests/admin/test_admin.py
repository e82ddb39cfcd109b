"""The admin as staff use it: find, inspect, retry, cancel, redeliver, create keys, rotate."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client

from apps.clients.models import ApiClient, ApiKey
from apps.jobs.models import Job, JobStatus
from apps.webhooks.models import WebhookDelivery
from tests.factories import JobFactory
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    browser = Client()
    browser.force_login(user)
    return browser


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_job_list_filters_searches_and_opens(staff: Client, tenant: Tenant) -> None:
    job_id = tenant.submit(metadata={"k": "v"}).json()["id"]
    assert staff.get("/admin/jobs/job/").status_code == 200
    assert (
        staff.get("/admin/jobs/job/?status__exact=queued&type=diagnostics.echo").status_code == 200
    )
    found = staff.get(f"/admin/jobs/job/?q={job_id}")
    assert found["Location"] == f"/admin/jobs/job/{job_id}/change/"  # a pasted id opens the job
    by_client = staff.get("/admin/jobs/job/?q=acme")
    assert job_id in by_client.content.decode()
    detail = staff.get(f"/admin/jobs/job/{job_id}/change/")
    assert detail.status_code == 200
    assert "queued" in detail.content.decode()  # the event inline


def test_retry_and_cancel_actions_use_the_services(staff: Client) -> None:
    failed = JobFactory(status=JobStatus.FAILED)
    queued = JobFactory(status=JobStatus.QUEUED)
    staff.post("/admin/jobs/job/", {"action": "retry_selected", "_selected_action": [failed.pk]})
    staff.post("/admin/jobs/job/", {"action": "cancel_selected", "_selected_action": [queued.pk]})
    assert Job.objects.get(pk=failed.pk).status == JobStatus.QUEUED
    assert Job.objects.get(pk=queued.pk).status == JobStatus.CANCELED


def test_a_refused_action_is_reported_not_crashed(staff: Client) -> None:
    done = JobFactory(status=JobStatus.SUCCEEDED)
    response = staff.post(
        "/admin/jobs/job/",
        {"action": "cancel_selected", "_selected_action": [done.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert any("only a queued" in m for m in messages_of(response))


def test_creating_a_client_shows_its_key_once(staff: Client) -> None:
    form = {
        "name": "from-admin",
        "is_active": "on",
        "keys-TOTAL_FORMS": "0",
        "keys-INITIAL_FORMS": "0",
    }
    response = staff.post("/admin/clients/apiclient/add/", form, follow=True)
    assert response.status_code == 200
    [message] = [m for m in messages_of(response) if "API key" in m]
    plain = message.split("copy it now): ")[1].split(" ")[0]
    client = ApiClient.objects.get(name="from-admin")
    assert Tenant(client, plain).get("/api/v1/jobs").status_code == 200
    assert plain not in ApiKey.objects.get(client=client).key_hash


def test_rotating_the_webhook_secret_keeps_the_old_one_for_a_day(
    staff: Client, tenant: Tenant
) -> None:
    old = tenant.client.webhook_secret
    response = staff.post(
        "/admin/clients/apiclient/",
        {"action": "rotate_webhook_secret", "_selected_action": [tenant.client.pk]},
        follow=True,
    )
    client = ApiClient.objects.get(pk=tenant.client.pk)
    assert client.webhook_secret != old
    assert client.previous_webhook_secret == old
    assert any(client.webhook_secret in m for m in messages_of(response))


def test_a_client_with_jobs_cannot_be_deleted(staff: Client, tenant: Tenant) -> None:
    tenant.submit()
    response = staff.get(f"/admin/clients/apiclient/{tenant.client.pk}/delete/")
    assert response.status_code == 403


def test_deliveries_list_and_redeliver(staff: Client, tenant: Tenant, receiver: Any) -> None:
    from apps.jobs import services

    job_id = tenant.submit(webhook_url=receiver.url).json()["id"]
    job = services.job_start(job_id=job_id)
    assert job is not None
    services.job_succeed(job=job, result={})
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    assert staff.get("/admin/webhooks/webhookdelivery/?status__exact=failed").status_code == 200
    assert staff.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/").status_code == 200
    staff.post(
        "/admin/webhooks/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
    )
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == "pending"


def test_a_clients_cap_and_weight_are_set_in_the_admin(staff: Client, tenant: Tenant) -> None:
    page = staff.get(f"/admin/clients/apiclient/{tenant.client.pk}/change/").content.decode()
    assert 'name="weight"' in page
    assert 'name="max_running_jobs"' in page
    form = {
        "name": tenant.client.name,
        "is_active": "on",
        "max_running_jobs": "4",
        "weight": "3",
        "keys-TOTAL_FORMS": "0",
        "keys-INITIAL_FORMS": "0",
    }
    response = staff.post(f"/admin/clients/apiclient/{tenant.client.pk}/change/", form)
    assert response.status_code == 302
    client = ApiClient.objects.get(pk=tenant.client.pk)
    assert (client.max_running_jobs, client.weight) == (4, 3)
    form["weight"] = "0"
    response = staff.post(f"/admin/clients/apiclient/{tenant.client.pk}/change/", form)
    assert response.status_code == 200  # the form again, with the error
    assert ApiClient.objects.get(pk=tenant.client.pk).weight == 3


def test_the_job_list_and_page_show_the_wait_reason(staff: Client, tenant: Tenant) -> None:
    job_id = tenant.submit(delay_seconds=600).json()["id"]
    assert "scheduled" in staff.get("/admin/jobs/job/").content.decode()
    page = staff.get(f"/admin/jobs/job/{job_id}/change/").content.decode()
    assert "wait reason" in page.lower()
