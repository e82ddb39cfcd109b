"""create_client: one JSON object, a hashed key that authenticates, a Standard Webhooks secret."""

from __future__ import annotations

import base64
import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.clients.keys import hash_api_key
from apps.clients.models import ApiClient, ApiKey
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def create(*args: str) -> dict[str, str]:
    out = StringIO()
    call_command("create_client", *args, stdout=out)
    return json.loads(out.getvalue())


def test_create_client_prints_key_and_secret_and_stores_only_the_hash() -> None:
    printed = create("acme")
    assert set(printed) == {"client", "api_key", "webhook_secret"}
    assert printed["client"] == "acme"
    assert printed["webhook_secret"].startswith("whsec_")
    assert len(base64.b64decode(printed["webhook_secret"].removeprefix("whsec_"))) >= 24
    key = ApiKey.objects.get(client__name="acme")
    assert key.key_hash == hash_api_key(printed["api_key"])
    assert printed["api_key"] not in {key.prefix, key.key_hash, key.name}
    assert not ApiClient.objects.get(name="acme").unlimited


def test_the_printed_key_authenticates() -> None:
    printed = create("acme")
    client = ApiClient.objects.get(name="acme")
    tenant = Tenant(client, printed["api_key"])
    assert tenant.get("/api/v1/jobs").status_code == 200


def test_unlimited_flag() -> None:
    create("loadtest", "--unlimited")
    assert ApiClient.objects.get(name="loadtest").unlimited


def test_duplicate_name_is_a_clear_error() -> None:
    create("acme")
    with pytest.raises(CommandError, match="exists already"):
        create("acme")


def test_create_client_sets_the_running_cap_and_weight() -> None:
    create("fair", "--max-running", "3", "--weight", "5")
    client = ApiClient.objects.get(name="fair")
    assert (client.max_running_jobs, client.weight) == (3, 5)
    create("plain")
    plain = ApiClient.objects.get(name="plain")
    assert (plain.max_running_jobs, plain.weight) == (None, 1)


@pytest.mark.parametrize("args", [("--max-running", "0"), ("--weight", "0")])
def test_create_client_refuses_limits_below_one(args: tuple[str, str]) -> None:
    with pytest.raises(CommandError):
        create("bad", *args)
    assert not ApiClient.objects.filter(name="bad").exists()


def test_the_default_cap_comes_from_the_setting(settings: Any) -> None:
    settings.DEFAULT_MAX_RUNNING_JOBS = 7
    create("capped")
    assert ApiClient.objects.get(name="capped").max_running_jobs == 7
