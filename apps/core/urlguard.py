"""Outbound URL safety (SSRF guard) for webhook URLs.

Checked at submission and again before every delivery, because DNS answers can change between
the two. Private, loopback, link-local, multicast, reserved and unspecified addresses are refused
unless ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is on (development and tests).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 2048


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def webhook_url_problem(url: object) -> str | None:
    """Why ``url`` may not receive webhooks, or None when it may."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return f"Must be a URL of at most {MAX_URL_LENGTH} characters."
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "Must be a valid URL."
    if parts.scheme not in {"http", "https"}:
        return "Must be an http or https URL."
    if getattr(settings, "WEBHOOK_REQUIRE_HTTPS", False) and parts.scheme != "https":
        return "Must be an https URL."
    if not parts.hostname:
        return "Must include a host."
    if parts.username or parts.password:
        return "Must not include credentials."
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return None
    addresses = resolve(parts.hostname, port)
    if not addresses:
        return "The host does not resolve."
    if not all(is_public_address(a) for a in addresses):
        return "Resolves to a private, loopback, link-local or multicast address."
    return None
