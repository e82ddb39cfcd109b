"""A wake-up published while a request is being served carries that request's id (a hint for
tracing the message; jobs carry their own id on the row)."""

from __future__ import annotations

import json
import uuid

import redis
from django.conf import settings

from apps.core.context import request_id_var
from apps.jobs.dispatch import publish_wakeups


def _messages(queue: str) -> list[dict]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.delete(queue)


def test_wakeups_carry_the_publishing_requests_id_when_there_is_one() -> None:
    queue = f"headers-{uuid.uuid4().hex[:8]}"
    token = request_id_var.set("req-abc")
    try:
        assert publish_wakeups({queue: 1}) == 1
    finally:
        request_id_var.reset(token)
    assert publish_wakeups({queue: 1}) == 1
    messages = _messages(queue)
    assert sorted(str(m["headers"].get("request_id")) for m in messages) == ["None", "req-abc"]
    assert {m["headers"]["task"] for m in messages} == {"conveyor.run_jobs"}
