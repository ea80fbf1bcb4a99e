"""The database rate limiter: exact counts under concurrency, windows that end, keys kept apart."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.ratelimit import DatabaseRateLimiter, counters
from keyhall.server.store.db import read_transaction


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_counts_up_to_the_limit_then_refuses_until_the_window_ends(engine: AsyncEngine) -> None:
    clock = ManualClock()
    limiter = DatabaseRateLimiter(engine, clock)
    key = f"send:{uuid.uuid4()}"
    decisions = [await limiter.hit(key, limit=3, window_s=60) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.count for d in decisions] == [1, 2, 3, 4]
    assert decisions[-1].retry_after_s == 60
    assert not (await limiter.peek(key, limit=3, window_s=60)).allowed

    clock.now += timedelta(seconds=45)
    refused = await limiter.hit(key, limit=3, window_s=60)
    assert not refused.allowed and refused.retry_after_s == 15

    clock.now += timedelta(seconds=15)  # the window began at 12:00:00 and ends at 12:01:00
    assert (await limiter.peek(key, limit=3, window_s=60)).count == 0
    again = await limiter.hit(key, limit=3, window_s=60)
    assert again.allowed and again.count == 1


async def test_keys_are_independent_and_clear_forgets(engine: AsyncEngine) -> None:
    limiter = DatabaseRateLimiter(engine, ManualClock())
    first, second = f"a:{uuid.uuid4()}", f"b:{uuid.uuid4()}"
    await limiter.hit(first, limit=1, window_s=60)
    assert not (await limiter.hit(first, limit=1, window_s=60)).allowed
    assert (await limiter.hit(second, limit=1, window_s=60)).allowed
    await limiter.clear(first)
    assert (await limiter.hit(first, limit=1, window_s=60)).count == 1


async def test_concurrent_hits_are_counted_exactly(engine: AsyncEngine) -> None:
    limiter = DatabaseRateLimiter(engine)
    key = f"race:{uuid.uuid4()}"
    decisions = await asyncio.gather(*(limiter.hit(key, limit=5, window_s=600) for _ in range(30)))
    assert sorted(d.count for d in decisions) == list(range(1, 31))
    assert sum(d.allowed for d in decisions) == 5


async def test_the_table_holds_no_key_in_clear(engine: AsyncEngine) -> None:
    limiter = DatabaseRateLimiter(engine)
    # "ada" would be a poor marker: it is hex, and one SHA-256 digest in ~70 contains it.
    await limiter.hit("signin:marker-lovelace@example.com", limit=5, window_s=60)
    async with read_transaction(engine) as conn:
        stored = (await conn.execute(select(counters.c.key))).scalars().all()
    assert stored and all("lovelace" not in key and len(key) == 64 for key in stored)
