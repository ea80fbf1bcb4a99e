"""store.db.read_one: on an SQLite file it reads through a synchronous read-only connection when it can;
it must see every committed write at once, never write, and fall back to the async driver when SQLite
answers busy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, exc, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.store import db
from keyhall.server.store.db import read_one, write_transaction
from keyhall.server.store.tables import RateLimitCounter

counters: Any = RateLimitCounter.__table__
_BY_KEY = select(counters.c.count).where(counters.c.key == bindparam("key"))
_LATER = datetime(2100, 1, 1, tzinfo=UTC)


async def _write(engine: AsyncEngine, key: str, count: int) -> None:
    async with write_transaction(engine) as conn:
        await conn.execute(counters.delete().where(counters.c.key == key))
        await conn.execute(counters.insert().values(key=key, count=count, window_ends_at=_LATER))


async def test_read_one_sees_each_committed_write_at_once(engine: AsyncEngine) -> None:
    key = "r1-" + engine.dialect.name
    assert await read_one(engine, _BY_KEY, {"key": key}) is None
    for hits in (1, 2, 3):
        await _write(engine, key, hits)
        row = await read_one(engine, _BY_KEY, {"key": key})
        assert row is not None and row.count == hits


async def test_the_sqlite_reader_is_read_only(engine: AsyncEngine) -> None:
    reader = db._sqlite_readers.get(engine)
    if engine.dialect.name != "sqlite":
        assert reader is None  # PostgreSQL reads through asyncpg
        return
    assert reader is not None
    with pytest.raises(exc.OperationalError, match="readonly"), reader.connect() as conn:
        conn.execute(text("DELETE FROM rate_limit_counters"))


async def test_busy_sqlite_falls_back_to_the_async_driver(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "sqlite":
        assert db._sqlite_readers.get(engine) is None  # nothing to fall back from
        return
    key = "r3-sqlite"
    await _write(engine, key, 7)

    class Busy:
        def connect(self) -> Any:
            raise exc.OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setitem(db._sqlite_readers, engine, Busy())
    row = await read_one(engine, _BY_KEY, {"key": key})
    assert row is not None and row.count == 7
