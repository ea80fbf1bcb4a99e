"""Counters in Redis (``KEYHALL_REDIS_URL``): the same :class:`~keyhall.server.ratelimit.RateLimiter` as the
database backend, on the ``limits`` library's async Redis storage (redis-py's asyncio client).

Same semantics as :class:`~keyhall.server.ratelimit.DatabaseRateLimiter`: a fixed window that starts at
its first hit (``limits``' atomic increment script sets the key's expiry on the hit that creates it), so
every process counting the same key counts exactly. Keys are the SHA-256 of the counter's name under
``KEYHALL_REDIS_KEY_PREFIX``: Redis holds no email address or client IP in clear.

This goes through the storage layer of ``limits`` (``incr``/``get``/``get_expiry``/``clear``/``check``)
rather than its ``FixedWindowRateLimiter``: the strategy puts the limit into the key and answers a bare
yes/no, while the lockout reads the same counter with two limits (hit with 0, peek with 1) and needs the
count itself.

Fail closed: when Redis cannot be reached (short connect/command timeouts, one immediate retry on a fresh
connection), every operation raises :class:`~keyhall.server.errors.RateLimitStoreUnavailable`, answered as
a 503 envelope with ``Retry-After`` before the request has written anything. Letting requests through
uncounted would switch the send throttles and the sign-in lockout off for as long as Redis is away. The
client reconnects by itself on the next request once Redis answers again.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import structlog
from limits.aio.storage import RedisStorage
from limits.errors import StorageError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from keyhall.server.errors import RateLimitStoreUnavailable
from keyhall.server.ratelimit import Decision, digest

__all__ = ["RETRY_AFTER_S", "RedisRateLimiter", "limits_uri"]

log = structlog.get_logger("keyhall.server")

# What a refused request is told to wait while Redis is unreachable.
RETRY_AFTER_S = 5

_SCHEMES = ("redis://", "rediss://", "unix://")


def limits_uri(url: str) -> str:
    """The ``limits`` storage URI of a plain Redis URL (``redis://``, ``rediss://``, ``unix://``)."""
    if url.startswith(("async+redis://", "async+rediss://", "async+redis+unix://")):
        return url
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    if url.startswith(_SCHEMES):
        return "async+" + url
    raise ValueError(f"KEYHALL_REDIS_URL must start with redis://, rediss:// or unix://, not {url[:12]!r}")


class RedisRateLimiter:
    """Counters in Redis under ``key_prefix``; see the module docstring."""

    def __init__(self, url: str, *, key_prefix: str = "keyhall:ratelimit", timeout_s: float = 0.5) -> None:
        self._storage = RedisStorage(
            limits_uri(url),
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=key_prefix,
            # Passed on to redis.asyncio.Redis: fail within about two timeouts instead of redis-py's
            # default of three retries with backoff of up to 10 s, so that an outage answers 503 quickly.
            # The one retry takes a fresh connection, which is what a restarted Redis needs.
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),  # type: ignore[arg-type]
        )

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        name = digest(key)
        async with _reachable("hit"):
            count = int(await self._storage.incr(name, max(1, int(window_s))))
            allowed = count <= limit
            retry_after = 0 if allowed else await self._retry_after(name)
        return Decision(allowed=allowed, count=count, retry_after_s=retry_after)

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        name = digest(key)
        async with _reachable("peek"):
            count = int(await self._storage.get(name))
            allowed = count < limit
            retry_after = 0 if allowed else await self._retry_after(name)
        return Decision(allowed=allowed, count=count, retry_after_s=retry_after)

    async def clear(self, key: str) -> None:
        async with _reachable("clear"):
            await self._storage.clear(digest(key))

    async def ping(self) -> bool:
        """Whether Redis answers PING (for /readyz); never raises."""
        return bool(await self._storage.check())

    async def close(self) -> None:
        # limits has no close of its own; the redispy bridge's client is redis-py's, which has aclose().
        client: Any = cast(Any, self._storage.bridge).get_connection()
        try:
            await client.aclose()
        except (RedisError, OSError):  # closing a client whose server is gone
            pass

    async def _retry_after(self, name: str) -> int:
        ends = float(await self._storage.get_expiry(name))
        return max(1, math.ceil(ends - time.time()))


@asynccontextmanager
async def _reachable(operation: str) -> AsyncIterator[None]:
    """Turn "Redis is not there" into the 503 domain error (the log line names no key)."""
    try:
        yield
    except (StorageError, RedisError, OSError, TimeoutError) as exc:
        cause = exc.storage_error if isinstance(exc, StorageError) else exc
        log.warning("rate_limit_store_unreachable", operation=operation, exc_type=type(cause).__name__)
        raise RateLimitStoreUnavailable(retry_after=RETRY_AFTER_S) from exc
