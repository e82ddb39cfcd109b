"""One typed state per request, shared by the Django request and DRF's wrapper of it."""

from __future__ import annotations

from django.test import RequestFactory
from rest_framework.request import Request

from apps.core.request_state import request_state


def test_the_state_is_attached_once_and_shared_with_the_drf_request() -> None:
    django_request = RequestFactory().get("/api/v1/jobs")
    state = request_state(django_request)
    assert request_state(Request(django_request)) is state
    assert request_state(django_request) is state


def test_an_untouched_state_counts_the_client_as_having_written() -> None:
    state = request_state(RequestFactory().get("/"))
    assert (state.request_id, state.recently_wrote, state.prefetched) == (None, True, [])


def test_the_middleware_puts_the_request_id_in_the_state(anonymous) -> None:  # type: ignore[no-untyped-def]
    response = anonymous.get("/healthz", HTTP_X_REQUEST_ID="state-1")
    assert request_state(response.wsgi_request).request_id == "state-1"
