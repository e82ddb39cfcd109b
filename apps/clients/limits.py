"""Rate limits: per API client and endpoint group, per IP for requests without a valid key.

Limits are django-ratelimit rates (``"600/m"``, ``"100/10s"``) in ``settings.RATE_LIMITS``, one
per endpoint group (``submit``: every POST; ``read``: a job, the job types; ``list``: the job
list) plus ``anonymous`` for requests without a key the cache vouches for. A client's own limit
for a group (ApiClient.rate_limit_<group>, edited in the admin) replaces the count and keeps the
group's period; clients created ``--unlimited`` are never counted.

Windows are django-ratelimit's fixed windows (staggered per subject, so that every client's
window does not reset at the same second) and ``Retry-After`` is the time left in the window.
The counting itself is ours: django-ratelimit's ``is_ratelimited`` costs two cache round trips
(ADD, then INCR), while here the counter's INCR rides in the round trip that authenticates the
request and reads the job's status entry (apps/clients/selectors.py: ``authenticate_key``), so
a poll still costs one round trip to Redis. A cache outage lets requests through: refusing
everybody because Redis is down would turn a degraded cache into an outage.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_ratelimit.core import EXPIRATION_FUDGE, _get_ip, _get_window, _split_rate, rate_re

from apps.clients.models import ApiClient
from apps.clients.selectors import Guard
from apps.core.errors import RateLimited
from apps.core.fastcache import Batch, fast_cache, key

logger = logging.getLogger(__name__)

GROUPS = ("submit", "read", "list")
ANONYMOUS = "anonymous"


@lru_cache(maxsize=64)
def parse_rate(rate: str) -> tuple[int, int]:
    """(count, period in seconds) of a django-ratelimit rate such as ``"600/m"``."""
    if not isinstance(rate, str) or not rate_re.fullmatch(rate):
        raise ImproperlyConfigured(f"{rate!r} is not a rate like 600/m or 100/10s")
    count, period = _split_rate(rate)
    return int(count), int(period)


def validate_rates(rates: dict[str, str]) -> None:
    for group in (*GROUPS, ANONYMOUS):
        if group not in rates:
            raise ImproperlyConfigured(f"RATE_LIMITS has no rate for {group!r}")
        parse_rate(rates[group])


def enabled() -> bool:
    return bool(getattr(settings, "RATELIMIT_ENABLE", True))


def counter(group: str, subject: str) -> tuple[tuple[str, int], int]:
    """The counter (cache key, TTL) of ``subject`` in ``group`` for the current window, and the
    window's end (epoch seconds)."""
    _, period = parse_rate(settings.RATE_LIMITS[group])
    window = _get_window(subject, period)
    return (key(f"rl:{group}:{subject}:{window}"), period + EXPIRATION_FUDGE), window


def client_counter(group: str, client_id: int) -> tuple[str, int]:
    return counter(group, f"c{client_id}")[0]


def limit_for(group: str, client: ApiClient) -> int | None:
    """Requests per window the client may make in ``group``; None when it is not limited."""
    if client.unlimited:
        return None
    own = getattr(client, f"rate_limit_{group}", None)
    return own if own is not None else parse_rate(settings.RATE_LIMITS[group])[0]


def enforce_client(group: str, client: ApiClient, count: int | None) -> None:
    """Raise RateLimited when ``count`` (this request included) is over the client's limit."""
    limit = limit_for(group, client)
    if limit is None or count is None:
        return
    if count > limit:
        _, window = counter(group, f"c{client.pk}")
        raise RateLimited(
            f"More than {limit} {group} requests in this window; retry later.",
            details={"group": group, "limit": limit},
            retry_after=_seconds_left(window),
        )


def _seconds_left(window: int) -> int:
    return max(1, window - int(time.time()))


def client_ip(request: Any) -> str:
    """The caller's address as django-ratelimit sees it (RATELIMIT_IP_META_KEY behind a proxy;
    IPv6 grouped by /64)."""
    return str(_get_ip(request))


def anonymous_guard(request: Any) -> Guard | None:
    """Counts a request whose key is not yet known to be valid against its IP, and refuses it
    before the database is asked about the key when the IP is over the anonymous limit."""
    if not enabled():
        return None
    subject = client_ip(request)
    (counter_key, ttl), window = counter(ANONYMOUS, subject)
    limit = parse_rate(settings.RATE_LIMITS[ANONYMOUS])[0]

    def check(count: int | None) -> None:
        if count is not None and count > limit:
            raise RateLimited(
                "Too many requests without a valid API key from this address.",
                details={"group": ANONYMOUS, "limit": limit},
                retry_after=_seconds_left(window),
            )

    return Guard(counter=(counter_key, ttl), check=check)


def check_anonymous(request: Any) -> None:
    """Count a request that carries no usable key against its IP; RateLimited when over."""
    guard = anonymous_guard(request)
    if guard is None:
        return
    try:
        count = fast_cache().run(Batch(counter=guard.counter)).count
    except Exception:
        logger.warning("rate limit counter failed", exc_info=True)
        return
    guard.check(count)
