"""The test process's own broker, emptied between tests that count messages."""

from __future__ import annotations

TEST_QUEUES = ("default", "heavy", "maintenance", "webhooks")


def empty_test_broker() -> None:
    """Drop every message in this test process's own broker: its own Redis database, or the
    queues Conveyor uses on RabbitMQ."""
    import redis
    from django.conf import settings

    if settings.BROKER_SCHEME in {"redis", "rediss"}:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        return
    from celery import current_app

    with current_app.connection_for_write() as connection:
        for queue in TEST_QUEUES:
            channel = connection.channel()
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: S110 - a queue nobody declared yet holds nothing
                pass
            finally:
                channel.close()
