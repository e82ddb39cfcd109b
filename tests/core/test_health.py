"""/healthz and /readyz."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.core.health import forget_readiness

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_readiness() -> Iterator[None]:
    forget_readiness()
    yield
    forget_readiness()


def test_readyz_reports_each_backing_service(anonymous: Any) -> None:
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert {"database", "cache", "broker"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_when_the_broker_is_unreachable(anonymous: Any, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = anonymous.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert response["Retry-After"]


def test_readyz_answers_concurrent_callers_from_one_round_of_checks(
    anonymous: Any, settings: Any
) -> None:
    """Within READYZ_CACHE_SECONDS the result is reused; after it, checked again."""
    settings.READYZ_CACHE_SECONDS = 60
    first = anonymous.get("/readyz").json()
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # would fail if checked again
    again = anonymous.get("/readyz")
    assert again.status_code == 200
    assert again.json() == first
    settings.READYZ_CACHE_SECONDS = 0
    assert anonymous.get("/readyz").status_code == 503


def test_a_refused_broker_is_reported_at_once(anonymous: Any, settings: Any) -> None:
    """A refused connection is a failure now, not a timeout after kombu's pause between
    retries, and leaves no check running into the next round."""
    import time

    from apps.core import health

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    started = time.monotonic()
    body = anonymous.get("/readyz").json()
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["error"] != "timeout"
    assert time.monotonic() - started < health.CHECK_TIMEOUT
    assert all(future.done() for future in health._running.values())
