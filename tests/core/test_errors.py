"""Every error code of API.md from a real request, in the one error shape."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from django.urls import path
from rest_framework.views import APIView

from apps.clients.models import ApiKey
from apps.clients.services import api_key_revoke
from tests.support.errors import assert_error
from tests.support.tenants import Tenant

pytestmark = pytest.mark.django_db


def test_malformed_json_is_400_validation_error(tenant: Tenant) -> None:
    response = tenant.http.post(
        "/api/v1/jobs", data=b'{"type": "diagnostics.echo",', content_type="application/json"
    )
    error = assert_error(response, 400, "validation_error")
    assert "body" in error["details"]


def test_body_that_is_not_an_object_is_400(tenant: Tenant) -> None:
    response = tenant.http.post("/api/v1/jobs", data=b"[1, 2]", content_type="application/json")
    assert_error(response, 400, "validation_error")


def test_wrong_content_type_is_415(tenant: Tenant) -> None:
    response = tenant.http.post("/api/v1/jobs", data="type=x", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_form_body_on_cancel_is_415(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    response = tenant.http.post(
        f"/api/v1/jobs/{job_id}/cancel",
        data="a=b",
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 415, "unsupported_media_type")


def test_unknown_type_is_400_with_details(tenant: Tenant) -> None:
    error = assert_error(tenant.submit(type="no.such"), 400, "validation_error")
    assert "type" in error["details"]


def test_input_violating_schema_is_400_keyed_by_field(tenant: Tenant) -> None:
    response = tenant.submit(input={"message": 5 * "x", "sleep_seconds": -1, "colour": "red"})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"input.sleep_seconds", "input.colour"}


def test_missing_required_input_field_is_400(tenant: Tenant) -> None:
    error = assert_error(tenant.submit(input={}), 400, "validation_error")
    assert "input.message" in error["details"]


def test_body_over_the_limit_is_413(tenant: Tenant, settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 2048
    response = tenant.submit(input={"message": "x" * 4000})
    assert_error(response, 413, "payload_too_large")


def test_input_over_the_type_limit_is_413(tenant: Tenant, settings: Any) -> None:
    settings.JOB_INPUT_MAX_BYTES = 100
    response = tenant.submit(input={"message": "x" * 500})
    assert_error(response, 413, "payload_too_large")


def test_missing_key_is_401(anonymous: Any) -> None:
    response = anonymous.get("/api/v1/jobs")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_key_is_401(anonymous: Any) -> None:
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer cvk_" + "A" * 43)
    assert_error(anonymous.get("/api/v1/jobs"), 401, "not_authenticated")


def test_malformed_authorization_header_is_401(anonymous: Any) -> None:
    anonymous.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert_error(anonymous.get("/api/v1/jobs"), 401, "not_authenticated")


def test_revoked_key_is_401_at_once(tenant: Tenant) -> None:
    assert tenant.get("/api/v1/jobs").status_code == 200  # now cached
    api_key_revoke(key=ApiKey.objects.get(client=tenant.client))
    assert_error(tenant.get("/api/v1/jobs"), 401, "not_authenticated")


def test_inactive_client_is_401(tenant: Tenant) -> None:
    assert tenant.get("/api/v1/jobs").status_code == 200
    tenant.client.is_active = False
    tenant.client.save()
    assert_error(tenant.get("/api/v1/jobs"), 401, "not_authenticated")


def test_unknown_job_is_404(tenant: Tenant) -> None:
    assert_error(tenant.get("/api/v1/jobs/01a200b0-b65f-70c2-99a9-6aca67852a51"), 404, "not_found")


def test_malformed_job_id_is_404(tenant: Tenant) -> None:
    assert_error(tenant.get("/api/v1/jobs/not-an-id"), 404, "not_found")


def test_unknown_path_is_404_in_the_error_shape(tenant: Tenant) -> None:
    assert_error(tenant.get("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405(tenant: Tenant) -> None:
    response = tenant.http.delete("/api/v1/jobs")
    assert_error(response, 405, "method_not_allowed")


def test_cancel_of_finished_job_is_409(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    assert tenant.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    assert_error(tenant.post(f"/api/v1/jobs/{job_id}/cancel"), 409, "invalid_state")


def test_retry_of_queued_job_is_409(tenant: Tenant) -> None:
    job_id = tenant.submit().json()["id"]
    assert_error(tenant.post(f"/api/v1/jobs/{job_id}/retry"), 409, "invalid_state")


class _Boom(APIView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get(self, request: Any) -> Any:
        raise RuntimeError("secret internals: password=hunter2")


urlpatterns = [path("boom", _Boom.as_view())]


@override_settings(ROOT_URLCONF=__name__)
def test_unexpected_error_is_500_without_internals(client: Any) -> None:
    response = client.get("/boom")
    error = assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.content.decode()
    assert "RuntimeError" not in error["message"]


def test_request_id_is_echoed_when_sane(tenant: Tenant) -> None:
    response = tenant.get("/api/v1/jobs", HTTP_X_REQUEST_ID="abc-123.DEF")
    assert response["X-Request-ID"] == "abc-123.DEF"


@pytest.mark.parametrize("bad", ["has space", "a" * 200, "new\nline", "<script>"])
def test_request_id_is_replaced_when_not_sane(tenant: Tenant, bad: str) -> None:
    response = tenant.get("/api/v1/jobs", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert len(response["X-Request-ID"]) == 32


def test_error_response_carries_the_request_id(anonymous: Any) -> None:
    response = anonymous.get("/api/v1/jobs", HTTP_X_REQUEST_ID="trace-me")
    assert response.json()["error"]["request_id"] == "trace-me"


def test_healthz_answers_without_auth(anonymous: Any) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]
