"""Schedules in the admin (admins edit through the API's validation, operators cannot; links
between jobs and their schedule) and ``manage.py schedules``."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.test import Client

from apps.jobs.models import Job
from apps.schedules.models import Schedule
from apps.schedules.services import schedule_trigger
from apps.staff.models import AdminAuditEntry
from tests.factories import ApiClientFactory, ScheduleFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/schedules/schedule/add/"


def browser_for(role: str) -> Client:
    browser = Client()
    browser.force_login(StaffUserFactory(role=role))
    return browser


def form(client_pk: Any, **fields: Any) -> dict[str, Any]:
    return {
        "client": client_pk,
        "name": "nightly",
        "cron": "30 2 * * *",
        "timezone": "Europe/Paris",
        "job": json.dumps({"type": "diagnostics.echo", "input": {"message": "x"}}),
        "enabled": "on",
        "overlap": "skip",
        **fields,
    }


def test_an_admin_creates_a_schedule_with_its_first_tick_and_an_audit_entry() -> None:
    client = ApiClientFactory()
    response = browser_for("admin").post(ADD, form(client.pk))
    assert response.status_code == 302, response.content.decode()[-2000:]
    schedule = Schedule.objects.get()
    assert (schedule.client_id, schedule.timezone) == (client.pk, "Europe/Paris")
    assert schedule.next_run_at is not None
    assert AdminAuditEntry.objects.get(action="add").object_ids == [str(schedule.pk)]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"cron": "99 * * * *"}, "five fields"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"job": json.dumps({"type": "diagnostics.echo", "input": {}})}, "input.message"),
        ({"job": json.dumps({"type": "diagnostics.echo", "delay_seconds": 3})}, "delay_seconds"),
    ],
)
def test_the_admin_form_refuses_what_the_api_refuses(fields: dict[str, Any], problem: str) -> None:
    response = browser_for("admin").post(ADD, form(ApiClientFactory().pk, **fields))
    assert response.status_code == 200
    assert problem in response.content.decode()
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_create_or_edit_schedules(role: str) -> None:
    schedule = ScheduleFactory()
    browser = browser_for(role)
    assert browser.get(f"/admin/schedules/schedule/{schedule.pk}/change/").status_code == 200
    assert browser.post(ADD, form(schedule.client_id, name="new")).status_code == 403
    change = form(schedule.client_id, cron="0 0 * * *")
    assert (
        browser.post(f"/admin/schedules/schedule/{schedule.pk}/change/", change).status_code == 403
    )
    assert Schedule.objects.get().cron == "* * * * *"


def test_an_admins_cron_edit_moves_the_next_tick_and_keeps_the_last_run() -> None:
    schedule = ScheduleFactory(overlap="allow")
    job = schedule_trigger(schedule=schedule, client=schedule.client)
    url = f"/admin/schedules/schedule/{schedule.pk}/change/"
    response = browser_for("admin").post(url, form(schedule.client_id, cron="0 4 * * *"))
    assert response.status_code == 302
    edited = Schedule.objects.get()
    assert edited.cron == "0 4 * * *"
    assert edited.next_run_at is not None
    local = edited.next_run_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (4, 0)
    assert edited.last_job_id == job.pk


def test_a_job_links_to_its_schedule_and_the_schedule_to_its_jobs() -> None:
    schedule = ScheduleFactory()
    job = schedule_trigger(schedule=schedule, client=schedule.client)
    browser = browser_for("viewer")
    job_page = browser.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert f"/admin/schedules/schedule/{schedule.pk}/change/" in job_page
    schedule_page = browser.get(f"/admin/schedules/schedule/{schedule.pk}/change/").content
    assert f"/admin/jobs/job/?schedule_id={schedule.pk}" in schedule_page.decode()
    listing = browser.get(f"/admin/jobs/job/?schedule_id={schedule.pk}").content.decode()
    assert str(job.pk) in listing


def test_the_command_lists_schedules_as_a_table_and_as_json() -> None:
    ScheduleFactory(name="nightly export", cron="30 2 * * *", timezone="Europe/Paris")
    ScheduleFactory(name="paused", enabled=False, next_run_at=None)
    out = StringIO()
    call_command("schedules", stdout=out)
    table = out.getvalue().splitlines()
    assert table[0].split() == [
        "client",
        "name",
        "cron",
        "timezone",
        "state",
        "next",
        "run",
        "last",
        "run",
        "skip",
    ]
    assert any("nightly export" in line and "30 2 * * *" in line for line in table)
    assert table[-1] == "(2 schedule(s); times in UTC)"
    out = StringIO()
    call_command("schedules", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert {row["name"] for row in rows} == {"nightly export", "paused"}
    assert {row["enabled"] for row in rows} == {True, False}
    assert all({"client", "cron", "timezone", "next_run_at", "last_job_id"} <= set(r) for r in rows)
    out = StringIO()
    call_command("schedules", "--json", "--due", stdout=out)
    assert json.loads(out.getvalue()) == []
    assert not Job.objects.exists()
