"""Rate limits and failure counters shared by every server process: send throttles, sign-in lockouts.

A counter is a fixed window that starts at its first hit: ``hit`` adds one and says whether the count is
still within ``limit``; the window ends ``window_s`` seconds after it began, and the next hit starts a new
one. The counters live where every process sees them: in the database (this module, the default) or in
Redis when ``KEYHALL_REDIS_URL`` is set (``keyhall.server.ratelimit_redis``, same semantics).

The database backend is one upsert per hit (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, on both
SQLite and PostgreSQL), so concurrent hits from several processes count exactly. Keys are stored as their
SHA-256, so the table holds no email address or client IP in clear. The ``limits`` library, used for
Redis, has no SQL storage; hence this small backend of our own.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.clock import Clock, system_clock
from keyhall.server.store.db import read_transaction, write_transaction
from keyhall.server.store.tables import RateLimitCounter

__all__ = ["DatabaseRateLimiter", "Decision", "RateLimiter", "digest"]

counters = cast(Table, RateLimitCounter.__table__)

# Expired counters are deleted now and then, on one hit in this many.
_PURGE_EVERY = 500


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int  # hits in the current window, this one included (for peek: so far)
    retry_after_s: int  # seconds until the window ends when not allowed, else 0


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        """Count one event under ``key``; allowed while the window's count is at most ``limit``."""

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        """Whether one more event would be allowed, without counting one (allowed: count < limit)."""

    async def clear(self, key: str) -> None:
        """Forget the counter (e.g. failures after a successful sign-in)."""


def digest(key: str) -> str:
    """What a counter is stored under, in either backend: no email address or IP in clear."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _retry_after(now: datetime, ends: datetime) -> int:
    return max(1, math.ceil((ends - now).total_seconds()))


class DatabaseRateLimiter:
    """Counters in the ``rate_limit_counters`` table."""

    def __init__(self, engine: AsyncEngine, clock: Clock = system_clock) -> None:
        self._engine = engine
        self._clock = clock
        self._hits = 0

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        now = self._clock()
        insert: Any = (postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert)(
            counters
        )
        insert = insert.values(key=digest(key), count=1, window_ends_at=now + timedelta(seconds=window_s))
        expired = counters.c.window_ends_at <= now
        statement = insert.on_conflict_do_update(
            index_elements=[counters.c.key],
            set_={
                "count": case((expired, 1), else_=counters.c.count + 1),
                "window_ends_at": case(
                    (expired, insert.excluded.window_ends_at), else_=counters.c.window_ends_at
                ),
            },
        ).returning(counters.c.count, counters.c.window_ends_at)
        self._hits += 1
        async with write_transaction(self._engine) as conn:
            row = (await conn.execute(statement)).one()
            if self._hits % _PURGE_EVERY == 0:
                await conn.execute(delete(counters).where(counters.c.window_ends_at <= now))
        count, ends = int(row[0]), _aware(row[1])
        allowed = count <= limit
        return Decision(allowed=allowed, count=count, retry_after_s=0 if allowed else _retry_after(now, ends))

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        now = self._clock()
        async with read_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    select(counters.c.count, counters.c.window_ends_at).where(counters.c.key == digest(key))
                )
            ).first()
        if row is None or _aware(row[1]) <= now:
            return Decision(allowed=True, count=0, retry_after_s=0)
        count, ends = int(row[0]), _aware(row[1])
        allowed = count < limit
        return Decision(allowed=allowed, count=count, retry_after_s=0 if allowed else _retry_after(now, ends))

    async def clear(self, key: str) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(delete(counters).where(counters.c.key == digest(key)))
