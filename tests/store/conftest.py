"""Migrated databases (an SQLite file and a PostgreSQL database) for in-process store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.store.db import create_engine
from keyhall.server.store.migrate import migrate
from tests.support.servers import create_postgres_database, drop_postgres_database


@pytest.fixture(scope="session")
def store_postgres_url() -> Iterator[str]:
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database; the PostgreSQL one is shared by the session, so tests use unique keys."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("store_postgres_url")
    database = create_engine(url)
    try:
        await migrate(database)
        yield database
    finally:
        await database.dispose()
