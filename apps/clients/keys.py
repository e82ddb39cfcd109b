"""API key format and hashing.

A key is ``cvk_`` + 43 URL-safe characters (256 random bits). Such a key cannot be guessed, so a
fast SHA-256 is the right hash (a slow password hash would only cost every request time).
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "cvk_"
DISPLAY_PREFIX_LENGTH = 12
_KEY_SHAPE = re.compile(r"cvk_[A-Za-z0-9_\-]{43}")


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(key: str) -> bool:
    return _KEY_SHAPE.fullmatch(key) is not None
