"""A tenant as the tests see it: an API client, its plain key and an HTTP client sending it."""

from __future__ import annotations

from typing import Any

from django.test import TestCase
from rest_framework.test import APIClient

from apps.clients.models import ApiClient


class Tenant:
    """An API client with its plain key, and an HTTP client that sends the key."""

    def __init__(self, client: ApiClient, api_key: str) -> None:
        self.client = client
        self.api_key = api_key
        self.http = APIClient()
        self.http.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")

    # Each call runs the on-commit hooks it registered (cache write-through, publishing), as a
    # real request's commit would, even inside a test's wrapping transaction.
    def post(self, path: str, data: Any = None, **extra: Any) -> Any:
        with TestCase.captureOnCommitCallbacks(execute=True):
            return self.http.post(path, data, format="json", **extra)

    def get(self, path: str, **extra: Any) -> Any:
        with TestCase.captureOnCommitCallbacks(execute=True):
            return self.http.get(path, **extra)

    def submit(self, **fields: Any) -> Any:
        body = {"type": "diagnostics.echo", "input": {"message": "hello"}, **fields}
        return self.post("/api/v1/jobs", body)
