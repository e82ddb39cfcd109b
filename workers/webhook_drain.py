"""The webhook pool's loop: a wake-up on the ``webhooks`` queue sends due deliveries.

Like a job wake-up (workers/runtime.py), it claims one delivery at a time from the database
(apps/webhooks/services.py decides which: due, leased to nobody, under its client's cap) until
none is due or ``WORKER_DRAIN_SECONDS`` is spent, then hands the rest over with one wake-up.
"""

from __future__ import annotations

import time
from collections import Counter

from django.conf import settings

from apps.jobs.dispatch import publish_wakeups
from apps.jobs.queues import WEBHOOKS_QUEUE
from apps.webhooks.services import delivery_attempt, delivery_claim_next


def drain_deliveries() -> dict[str, int]:
    """Send due webhook deliveries until none is due or the budget is spent (then hand over).

    Returns how many attempts ended in each outcome.
    """
    deadline = time.monotonic() + settings.WORKER_DRAIN_SECONDS
    outcomes: Counter[str] = Counter()
    while True:
        delivery = delivery_claim_next()
        if delivery is None:
            return dict(outcomes)
        outcomes[delivery_attempt(delivery)] += 1
        if time.monotonic() >= deadline:
            publish_wakeups({WEBHOOKS_QUEUE: 1})
            return dict(outcomes)
