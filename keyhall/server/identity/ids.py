"""The one id generator: 24 lower-case hex characters, time-ordered, like GenAuth's ids.

Six bytes of milliseconds since the epoch, then six random bytes: ids sort by creation time and two
processes creating ids in the same millisecond collide with probability 2**-48.
"""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    millis = time.time_ns() // 1_000_000
    return millis.to_bytes(6, "big").hex() + secrets.token_hex(6)


def new_secret() -> str:
    """An application secret: 32 random bytes, hex (only its SHA-256 is stored)."""
    return secrets.token_hex(32)
