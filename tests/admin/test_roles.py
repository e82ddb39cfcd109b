"""Staff roles in the admin: each action needs its own permission (403 otherwise, even by a
forged POST), viewers never see a secret, every write is in the audit log, which nobody edits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.utils import timezone

from apps.clients.keys import DISPLAY_PREFIX_LENGTH
from apps.clients.models import ApiClient, ApiKey
from apps.clients.services import webhook_secret_rotate
from apps.jobs.models import Job, JobStatus
from apps.schedules.models import Schedule
from apps.staff.models import AdminAuditEntry
from apps.staff.roles import ROLE_GROUPS
from apps.webhooks.models import WebhookDelivery
from tests.factories import (
    ApiClientFactory,
    JobFactory,
    ScheduleFactory,
    StaffUserFactory,
    WebhookDeliveryFactory,
)
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db

ROLES = ("viewer", "operator", "admin")


def browser_for(role: str | None) -> Client:
    browser = Client()
    browser.force_login(StaffUserFactory(role=role))
    return browser


@pytest.fixture
def superuser() -> Client:
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return browser


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- The roles themselves -------------------------------------------------------------------------
VIEW = {
    "jobs.view_job",
    "jobs.view_jobevent",
    "jobs.view_jobbulkaction",
    "webhooks.view_webhookdelivery",
    "webhooks.view_webhookattempt",
    "clients.view_apiclient",
    "clients.view_apikey",
    "staff.view_adminauditentry",
    "schedules.view_schedule",
}
OPERATE = {
    "jobs.cancel_job",
    "jobs.retry_job",
    "webhooks.redeliver_webhookdelivery",
    "schedules.trigger_schedule",
    "schedules.toggle_schedule",
}
ADMINISTER = {
    "clients.add_apiclient",
    "clients.change_apiclient",
    "clients.rotate_webhook_secret",
    "clients.add_apikey",
    "clients.revoke_apikey",
    "schedules.add_schedule",
    "schedules.change_schedule",
    "schedules.delete_schedule",
}


def test_the_migration_creates_three_groups_with_exactly_their_permissions() -> None:
    expected = {
        "Conveyor viewers": VIEW,
        "Conveyor operators": VIEW | OPERATE,
        "Conveyor admins": VIEW | OPERATE | ADMINISTER,
    }
    assert set(ROLE_GROUPS.values()) == set(expected)
    for name, wanted in expected.items():
        group = Group.objects.get(name=name)
        granted = {
            f"{p.content_type.app_label}.{p.codename}"
            for p in group.permissions.select_related("content_type")
        }
        assert granted == wanted, name


def test_the_roles_are_put_back_as_defined_after_every_migrate() -> None:
    from django.core.management.sql import emit_post_migrate_signal

    Group.objects.get(name="Conveyor viewers").permissions.add(
        Permission.objects.get(codename="cancel_job")
    )
    Group.objects.filter(name="Conveyor admins").delete()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    test_the_migration_creates_three_groups_with_exactly_their_permissions()


def test_every_admin_action_declares_the_permission_it_needs() -> None:
    for model, model_admin in admin.site._registry.items():
        if not model.__module__.startswith("apps."):
            continue
        for name in [*(model_admin.actions or []), "delete_selected"]:
            func = getattr(type(model_admin), name, None) or admin.site.get_action(name)
            assert getattr(func, "allowed_permissions", None), f"{model.__name__}.{name}"
            for permission in func.allowed_permissions:
                assert hasattr(model_admin, f"has_{permission}_permission"), name


def test_a_staff_user_without_a_role_sees_nothing(tenant: Tenant) -> None:
    browser = browser_for(None)
    for url in ("/admin/jobs/job/", "/admin/clients/apiclient/", "/admin/staff/adminauditentry/"):
        assert browser.get(url).status_code == 403, url


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_jobs_deliveries_clients_and_the_audit_log(role: str) -> None:
    delivery = WebhookDeliveryFactory()
    browser = browser_for(role)
    assert browser.get("/admin/").status_code == 200
    for url in (
        "/admin/jobs/job/",
        f"/admin/jobs/job/{delivery.job_id}/change/",
        "/admin/webhooks/webhookdelivery/",
        f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/",
        "/admin/clients/apiclient/",
        f"/admin/clients/apiclient/{delivery.job.client_id}/change/",
        "/admin/clients/apikey/",
        "/admin/staff/adminauditentry/",
    ):
        assert browser.get(url).status_code == 200, url


# --- Every action, every role, by a forged POST ---------------------------------------------------
@dataclass
class Case:
    name: str
    changelist: str
    action: str
    make: Callable[[], Any]  # the object the action is aimed at
    happened: Callable[[Any], bool]
    allowed: tuple[str, ...]


def _key() -> ApiKey:
    from apps.clients.services import api_key_create

    key, _ = api_key_create(client=ApiClientFactory(), name="k")
    return key


CASES = [
    Case(
        "retry",
        "/admin/jobs/job/",
        "retry_selected",
        lambda: JobFactory(status=JobStatus.FAILED),
        lambda job: Job.objects.get(pk=job.pk).status == JobStatus.QUEUED,
        ("operator", "admin"),
    ),
    Case(
        "cancel",
        "/admin/jobs/job/",
        "cancel_selected",
        lambda: JobFactory(status=JobStatus.QUEUED),
        lambda job: Job.objects.get(pk=job.pk).status == JobStatus.CANCELED,
        ("operator", "admin"),
    ),
    Case(
        "redeliver",
        "/admin/webhooks/webhookdelivery/",
        "redeliver",
        WebhookDeliveryFactory,
        lambda d: WebhookDelivery.objects.get(pk=d.pk).status == "pending",
        ("operator", "admin"),
    ),
    Case(
        "rotate",
        "/admin/clients/apiclient/",
        "rotate_webhook_secret",
        ApiClientFactory,
        lambda c: ApiClient.objects.get(pk=c.pk).webhook_secret != c.webhook_secret,
        ("admin",),
    ),
    Case(
        "create key",
        "/admin/clients/apiclient/",
        "create_api_key",
        ApiClientFactory,
        lambda c: ApiKey.objects.filter(client=c).exists(),
        ("admin",),
    ),
    Case(
        "revoke key",
        "/admin/clients/apikey/",
        "revoke_selected",
        _key,
        lambda k: ApiKey.objects.get(pk=k.pk).revoked_at is not None,
        ("admin",),
    ),
    Case(
        "run schedule",
        "/admin/schedules/schedule/",
        "trigger_selected",
        ScheduleFactory,
        lambda s: Job.objects.filter(schedule_id=s.pk).exists(),
        ("operator", "admin"),
    ),
    Case(
        "disable schedule",
        "/admin/schedules/schedule/",
        "disable_selected",
        ScheduleFactory,
        lambda s: not Schedule.objects.get(pk=s.pk).enabled,
        ("operator", "admin"),
    ),
    Case(
        "enable schedule",
        "/admin/schedules/schedule/",
        "enable_selected",
        lambda: ScheduleFactory(enabled=False, next_run_at=None),
        lambda s: Schedule.objects.get(pk=s.pk).next_run_at is not None,
        ("operator", "admin"),
    ),
    Case(
        "delete schedules",
        "/admin/schedules/schedule/",
        "delete_selected",
        ScheduleFactory,
        lambda s: not Schedule.objects.filter(pk=s.pk).exists(),
        ("admin",),
    ),
    Case(
        "delete clients",
        "/admin/clients/apiclient/",
        "delete_selected",
        ApiClientFactory,
        lambda c: not ApiClient.objects.filter(pk=c.pk).exists(),
        (),  # superusers only
    ),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_forged_action_post_is_refused_unless_the_role_has_its_permission(
    case: Case, role: str
) -> None:
    target = case.make()
    browser = browser_for(role)
    form = {"action": case.action, "_selected_action": [target.pk], "index": "0", "post": "yes"}
    response = browser.post(case.changelist, form)
    if role in case.allowed:
        assert response.status_code == 302
        assert case.happened(target)
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
        assert not case.happened(target)
        entry = AdminAuditEntry.objects.get(action=case.action)
        assert entry.denied
        assert entry.object_ids == [str(target.pk)]


# Bulk deletion is a list action only (an object's page has its own delete view).
ON_PAGE = [c for c in CASES if c.allowed and c.action != "delete_selected"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", ON_PAGE, ids=lambda c: c.name)
def test_the_same_actions_on_an_objects_page_need_the_same_permission(
    case: Case, role: str
) -> None:
    target = case.make()
    browser = browser_for(role)
    form = {"CHANGE_FORM-action": case.action, "_selected_action": [target.pk]}
    response = browser.post(f"{case.changelist}{target.pk}/change/", form)
    if role in case.allowed:
        assert response.status_code == 302
        assert case.happened(target)
    else:
        assert response.status_code == 403
        assert not case.happened(target)


def test_an_action_the_user_lacks_is_refused_beside_one_they_have() -> None:
    # Django alone answers such a POST with a redirect and "No action selected".
    user = StaffUserFactory()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="jobs", codename__in=["view_job", "retry_job"]
        )
    )
    browser = Client()
    browser.force_login(user)
    job = JobFactory(status=JobStatus.QUEUED)
    forged = {"action": "cancel_selected", "_selected_action": [job.pk]}
    assert browser.post("/admin/jobs/job/", forged).status_code == 403
    on_page = {"CHANGE_FORM-action": "cancel_selected", "_selected_action": [job.pk]}
    assert browser.post(f"/admin/jobs/job/{job.pk}/change/", on_page).status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert AdminAuditEntry.objects.filter(action="cancel_selected", denied=True).count() == 2
    allowed = {"CHANGE_FORM-action": "retry_selected", "_selected_action": [job.pk]}
    assert browser.post(f"/admin/jobs/job/{job.pk}/change/", allowed).status_code == 302


def test_the_action_menu_offers_each_role_only_its_actions() -> None:
    JobFactory()
    menus = {}
    for role in ROLES:
        page = browser_for(role).get("/admin/jobs/job/").content.decode()
        menus[role] = {a for a in ("retry_selected", "cancel_selected") if a in page}
    assert menus == {
        "viewer": set(),
        "operator": {"retry_selected", "cancel_selected"},
        "admin": {"retry_selected", "cancel_selected"},
    }


# --- Client edits ---------------------------------------------------------------------------------
def _client_form(client: ApiClient, **changes: Any) -> dict[str, Any]:
    form = {
        "name": client.name,
        "is_active": "on",
        "max_active_jobs": "",
        "rate_limit_submit": "",
        "rate_limit_read": "",
        "rate_limit_list": "",
        "keys-TOTAL_FORMS": "0",
        "keys-INITIAL_FORMS": "0",
        **changes,
    }
    return {k: v for k, v in form.items() if v is not None}


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_change_a_clients_limits_or_deactivate_it(role: str) -> None:
    client = ApiClientFactory()
    url = f"/admin/clients/apiclient/{client.pk}/change/"
    response = browser_for(role).post(
        url, _client_form(client, max_active_jobs="1", is_active=None)
    )
    assert response.status_code == 403
    client.refresh_from_db()
    assert client.max_active_jobs is None
    assert client.is_active
    assert AdminAuditEntry.objects.get(action="change").denied

    response = browser_for("admin").post(url, _client_form(client, max_active_jobs="7"))
    assert response.status_code == 302
    client.refresh_from_db()
    assert client.max_active_jobs == 7
    entry = AdminAuditEntry.objects.get(action="change", denied=False)
    assert entry.object_ids == [str(client.pk)]
    assert "max_active_jobs" in entry.outcome.lower().replace(" ", "_")


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_create_clients(role: str) -> None:
    form = {
        "name": "new-one",
        "is_active": "on",
        "keys-TOTAL_FORMS": "0",
        "keys-INITIAL_FORMS": "0",
    }
    assert browser_for(role).post("/admin/clients/apiclient/add/", form).status_code == 403
    assert not ApiClient.objects.filter(name="new-one").exists()
    assert browser_for("admin").post("/admin/clients/apiclient/add/", form).status_code == 302
    assert ApiClient.objects.filter(name="new-one").exists()


# --- Secrets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_no_admin_page_shows_a_secret_or_a_key_hash(role: str, tenant: Tenant) -> None:
    client = tenant.client
    webhook_secret_rotate(client=client)
    client.refresh_from_db()
    key = ApiKey.objects.get(client=client)
    JobFactory(client=client)
    # Key prefixes are shown by design (to recognise a key); the rest never is.
    secrets = {
        "api key": tenant.api_key[DISPLAY_PREFIX_LENGTH:],
        "key hash": key.key_hash,
        "webhook secret": client.webhook_secret.removeprefix("whsec_"),
        "previous webhook secret": client.previous_webhook_secret.removeprefix("whsec_"),
    }
    browser = browser_for(role)
    # Some audit entries and admin history to show.
    browser_for("admin").post(
        f"/admin/clients/apiclient/{client.pk}/change/", _client_form(client, max_active_jobs="3")
    )
    pages = [
        "/admin/clients/apiclient/",
        f"/admin/clients/apiclient/{client.pk}/change/",
        f"/admin/clients/apiclient/{client.pk}/history/",
        "/admin/clients/apikey/",
        f"/admin/clients/apikey/{key.pk}/change/",
        "/admin/staff/adminauditentry/",
        f"/admin/staff/adminauditentry/{AdminAuditEntry.objects.first().pk}/change/",  # type: ignore[union-attr]
    ]
    for url in pages:
        response = browser.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for what, secret in secrets.items():
            assert secret not in html, f"{what} on {url}"


@pytest.mark.parametrize("role", ROLES)
def test_sensitive_job_input_is_filtered_on_job_and_delivery_pages(role: str) -> None:
    from apps.webhooks.outbox import job_snapshot

    job = JobFactory(
        type="testing.leaky_failure",
        input={"password": "hunter2-very-secret", "note": "visible-note"},
        status=JobStatus.FAILED,
    )
    delivery = WebhookDeliveryFactory(job=job, job_snapshot=job_snapshot(job.pk))
    browser = browser_for(role)
    for url in (
        f"/admin/jobs/job/{job.pk}/change/",
        f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/",
    ):
        html = browser.get(url).content.decode()
        assert "hunter2-very-secret" not in html, url
        assert "[Filtered]" in html, url
        assert "visible-note" in html, url


def test_a_new_key_and_secret_are_shown_once_to_the_admin_and_never_audited() -> None:
    admin_browser = browser_for("admin")
    form = {"name": "fresh", "is_active": "on", "keys-TOTAL_FORMS": "0", "keys-INITIAL_FORMS": "0"}
    response = admin_browser.post("/admin/clients/apiclient/add/", form, follow=True)
    [message] = [m for m in messages_of(response) if "API key" in m]
    plain = message.split("copy it now): ")[1].split(" ")[0]
    client = ApiClient.objects.get(name="fresh")
    assert client.webhook_secret in message
    response = admin_browser.post(
        "/admin/clients/apiclient/",
        {"action": "rotate_webhook_secret", "_selected_action": [client.pk]},
        follow=True,
    )
    client.refresh_from_db()
    assert any(client.webhook_secret in m for m in messages_of(response))
    # The next page shows them no more.
    page = admin_browser.get(f"/admin/clients/apiclient/{client.pk}/change/").content.decode()
    assert plain not in page
    assert client.webhook_secret not in page

    entries = list(AdminAuditEntry.objects.values())
    assert {e["action"] for e in entries} == {"add", "rotate_webhook_secret"}
    dumped = repr(entries)
    for secret in (plain, client.webhook_secret, client.previous_webhook_secret):
        assert secret not in dumped
    key = ApiKey.objects.get(client=client)
    added = AdminAuditEntry.objects.get(action="add")
    assert added.outcome == f"created with API key id {key.pk}"


# --- The audit log --------------------------------------------------------------------------------
def test_an_action_is_audited_with_who_when_what_and_which_objects() -> None:
    operator = StaffUserFactory(role="operator")
    browser = Client()
    browser.force_login(operator)
    queued = [JobFactory(status=JobStatus.QUEUED) for _ in range(2)]
    done = JobFactory(status=JobStatus.SUCCEEDED)
    selected = [job.pk for job in [*queued, done]]
    response = browser.post(
        "/admin/jobs/job/",
        {"action": "cancel_selected", "_selected_action": selected},
        HTTP_X_REQUEST_ID="audit-req-1",
    )
    assert response.status_code == 302
    entry = AdminAuditEntry.objects.get()
    assert entry.user == operator
    assert entry.username == operator.username
    assert entry.action == "cancel_selected"
    assert entry.model == "jobs.job"
    assert sorted(entry.object_ids) == sorted(str(pk) for pk in selected)
    assert entry.object_count == 3
    assert entry.outcome == "2 canceled, 1 refused"
    assert not entry.denied
    assert entry.request_id == "audit-req-1"
    assert entry.at is not None


def test_an_audit_entry_keeps_its_username_when_the_user_is_deleted() -> None:
    operator = StaffUserFactory(role="operator")
    browser = Client()
    browser.force_login(operator)
    job = JobFactory(status=JobStatus.FAILED)
    browser.post("/admin/jobs/job/", {"action": "retry_selected", "_selected_action": [job.pk]})
    name = operator.username
    operator.delete()
    entry = AdminAuditEntry.objects.get()
    assert entry.user is None
    assert entry.username == name


def test_the_audit_log_is_read_only_even_for_superusers(superuser: Client) -> None:
    job = JobFactory(status=JobStatus.FAILED)
    superuser.post("/admin/jobs/job/", {"action": "retry_selected", "_selected_action": [job.pk]})
    entry = AdminAuditEntry.objects.get()
    base = "/admin/staff/adminauditentry/"
    assert superuser.get(base).status_code == 200
    assert superuser.get(f"{base}{entry.pk}/change/").status_code == 200
    assert superuser.post(f"{base}add/", {"action": "x", "model": "y"}).status_code == 403
    assert superuser.post(f"{base}{entry.pk}/change/", {"outcome": "nothing"}).status_code == 403
    assert superuser.post(f"{base}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    forged = {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}
    assert superuser.post(base, forged).status_code == 403
    entry.refresh_from_db()
    assert entry.outcome == "1 retried, 0 refused"
    assert AdminAuditEntry.objects.filter(denied=True).count() == 4


@pytest.mark.parametrize("role", ROLES)
def test_staff_filter_the_audit_log_by_user_action_and_date(role: str) -> None:
    operator = StaffUserFactory(role="operator")
    browser = Client()
    browser.force_login(operator)
    job = JobFactory(status=JobStatus.FAILED)
    browser.post("/admin/jobs/job/", {"action": "retry_selected", "_selected_action": [job.pk]})
    reader = browser_for(role)
    base = "/admin/staff/adminauditentry/"
    today = timezone.localdate(AdminAuditEntry.objects.get().at)
    for query in (
        f"?user__id__exact={operator.pk}",
        "?action__exact=retry_selected",
        "?denied__exact=0",
        f"?at__year={today.year}&at__month={today.month}&at__day={today.day}",
        f"?q={operator.username}",
    ):
        response = reader.get(base + query)
        assert response.status_code == 200, query
        assert response.context["cl"].result_count == 1, query


# --- Bulk delete of clients -----------------------------------------------------------------------
def test_bulk_delete_of_clients_with_jobs_is_refused_with_a_message(superuser: Client) -> None:
    busy = JobFactory().client
    idle = ApiClientFactory()
    for extra in ({}, {"post": "yes"}):  # the confirmation page, then the confirmed POST
        response = superuser.post(
            "/admin/clients/apiclient/",
            {"action": "delete_selected", "_selected_action": [busy.pk, idle.pk], **extra},
            follow=True,
        )
        assert response.status_code == 200
        [error] = [m for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
        assert busy.name in str(error)
        assert "deactivate" in str(error)
    assert ApiClient.objects.filter(pk__in=[busy.pk, idle.pk]).count() == 2
    assert Job.objects.filter(client=busy).exists()
    refusals = AdminAuditEntry.objects.filter(action="delete_selected")
    assert [e.outcome for e in refusals] == ["refused: 1 selected client(s) have jobs"] * 2


def test_a_job_arriving_after_the_check_still_stops_the_deletion(superuser: Client) -> None:
    from django.test import RequestFactory

    from apps.clients.admin import ClientsHaveJobs

    busy = JobFactory().client
    request = RequestFactory().post("/admin/clients/apiclient/")
    request.user = User.objects.get(username="root")
    client_admin = admin.site._registry[ApiClient]
    with pytest.raises(ClientsHaveJobs):
        client_admin.delete_queryset(request, ApiClient.objects.filter(pk=busy.pk))
    with pytest.raises(PermissionDenied):
        client_admin.delete_model(request, busy)
    assert ApiClient.objects.filter(pk=busy.pk).exists()


def test_a_deletion_refused_at_the_last_moment_leaves_no_trace(
    superuser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.admin.models import DELETION, LogEntry

    from apps.clients import admin as clients_admin

    busy = JobFactory().client
    real_check = clients_admin._names_with_jobs
    checks = iter([[]])  # the action's own check misses the job, as if it arrived just after
    monkeypatch.setattr(
        clients_admin,
        "_names_with_jobs",
        lambda queryset: next(checks, None) or real_check(queryset),
    )
    response = superuser.post(
        "/admin/clients/apiclient/",
        {"action": "delete_selected", "_selected_action": [busy.pk], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    assert any(busy.name in m for m in messages_of(response))
    assert ApiClient.objects.filter(pk=busy.pk).exists()
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()
    [entry] = AdminAuditEntry.objects.filter(action="delete_selected")
    assert entry.outcome.startswith("refused")


def test_bulk_delete_of_clients_without_jobs_works_and_is_audited(superuser: Client) -> None:
    idle = [ApiClientFactory(), ApiClientFactory()]
    response = superuser.post(
        "/admin/clients/apiclient/",
        {"action": "delete_selected", "_selected_action": [c.pk for c in idle], "post": "yes"},
    )
    assert response.status_code == 302
    assert not ApiClient.objects.filter(pk__in=[c.pk for c in idle]).exists()
    entry = AdminAuditEntry.objects.get(action="delete_selected")
    assert sorted(entry.object_ids) == sorted(str(c.pk) for c in idle)
    assert entry.outcome == "2 deleted"


# --- Who holds which role -------------------------------------------------------------------------
def test_staff_role_command_gives_exactly_one_role_and_is_audited() -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    user = User.objects.create_user("dana", password="pw")
    call_command("staff_role", "dana", "operator")
    user.refresh_from_db()
    assert user.is_staff
    assert set(user.groups.values_list("name", flat=True)) == {"Conveyor operators"}
    assert user.has_perm("jobs.cancel_job")
    assert not user.has_perm("clients.rotate_webhook_secret")

    call_command("staff_role", "dana", "admin")
    user = User.objects.get(pk=user.pk)  # a fresh permission cache
    assert set(user.groups.values_list("name", flat=True)) == {"Conveyor admins"}
    assert user.has_perm("clients.rotate_webhook_secret")

    call_command("staff_role", "dana", "none")
    user = User.objects.get(pk=user.pk)
    assert not user.is_staff
    assert not user.groups.exists()
    outcomes = [e.outcome for e in AdminAuditEntry.objects.filter(action="staff_role")]
    assert sorted(outcomes) == ["dana: admin", "dana: no role", "dana: operator"]
    with pytest.raises(CommandError):
        call_command("staff_role", "nobody", "viewer")


def test_giving_a_role_on_the_admins_user_page_is_audited(superuser: Client) -> None:
    user = StaffUserFactory(role="viewer")
    operators = Group.objects.get(name="Conveyor operators")
    form = {
        "username": user.username,
        "is_active": "on",
        "is_staff": "on",
        "groups": [operators.pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    response = superuser.post(f"/admin/auth/user/{user.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert set(user.groups.values_list("name", flat=True)) == {"Conveyor operators"}
    entry = AdminAuditEntry.objects.get(action="change", model="auth.user")
    assert entry.username == "root"
    assert entry.object_ids == [str(user.pk)]
    assert "Groups" in entry.outcome
