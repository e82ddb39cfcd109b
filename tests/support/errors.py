"""The one error shape every 4xx and 5xx answer has (API.md, "Errors")."""

from __future__ import annotations

from typing import Any


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["request_id"] == response["X-Request-ID"]
    assert "Traceback" not in response.content.decode()
    return error
