"""Reading queue depths from the broker (Redis, RabbitMQ or the filesystem transport)."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app

logger = logging.getLogger(__name__)


def queue_depths(queues: list[str]) -> dict[str, int | None]:
    """Messages waiting in each queue; None where the broker could not be asked."""
    depths: dict[str, int | None] = {}
    try:
        with current_app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            channel: Any = connection.channel()
            try:
                for queue in queues:
                    try:
                        depths[queue] = channel.queue_declare(
                            queue=queue, passive=True
                        ).message_count
                    except Exception:
                        # A queue nobody declared yet holds nothing. AMQP closes the channel on
                        # a failed passive declare, so take a fresh one.
                        depths[queue] = 0
                        channel.close()
                        channel = connection.channel()
            finally:
                channel.close()
    except Exception:
        logger.warning("could not read queue depths from the broker", exc_info=True)
        return dict.fromkeys(queues)
    return depths
