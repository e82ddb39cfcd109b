"""Time-ordered identifiers (UUIDv7, RFC 9562).

Job ids sort by creation time, so the primary-key index takes inserts at its right edge and the
list endpoint pages newest-first on the key alone. Within one process the 12-bit counter keeps ids
strictly increasing inside a millisecond (RFC 9562 §6.2, method 1).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7_with_time() -> tuple[uuid.UUID, datetime]:
    """A new UUIDv7 and the instant (millisecond precision) it encodes."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, int.from_bytes(os.urandom(2)) & 0x3FF
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value), datetime.fromtimestamp(ms / 1000, tz=UTC)


def uuid7() -> uuid.UUID:
    return uuid7_with_time()[0]
