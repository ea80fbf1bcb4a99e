"""AppDirectory keeps an app (and its pool's rules) for its TTL, then reads the database again; a change
made behind its back (another process, an operator's UPDATE) shows within the TTL, never later."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.clock import system_clock
from keyhall.server.flows.setup import initialise
from keyhall.server.services import AppDirectory


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _rename(engine: AsyncEngine, app_id: str, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE applications SET name = :n WHERE id = :id"), {"n": name, "id": app_id}
        )


async def test_a_change_shows_when_the_ttl_is_over(engine: AsyncEngine) -> None:
    app_id = (await initialise(engine, system_clock)).app_id
    ticks = Ticks()
    directory = AppDirectory(engine, ttl_s=5.0, now=ticks)
    original = await directory.get(app_id)
    assert original is not None
    renamed = f"renamed-{uuid.uuid4().hex[:8]}"
    await _rename(engine, app_id, renamed)
    try:
        ticks.now += 4.9
        cached = await directory.get(app_id)
        assert cached is not None and cached.name == original.name  # within the TTL: the kept copy
        ticks.now += 0.2
        fresh = await directory.get(app_id)
        assert fresh is not None and fresh.name == renamed  # past it: read again
    finally:
        await _rename(engine, app_id, original.name)


async def test_ttl_zero_reads_every_time_and_unknown_ids_are_not_kept(engine: AsyncEngine) -> None:
    app_id = (await initialise(engine, system_clock)).app_id
    directory = AppDirectory(engine, ttl_s=0.0)
    original = await directory.get(app_id)
    assert original is not None
    renamed = f"renamed-{uuid.uuid4().hex[:8]}"
    await _rename(engine, app_id, renamed)
    try:
        again = await directory.get(app_id)
        assert again is not None and again.name == renamed
    finally:
        await _rename(engine, app_id, original.name)
    keeping = AppDirectory(engine, ttl_s=60.0)
    assert await keeping.get("no-such-app") is None
    assert keeping._cache == {}
