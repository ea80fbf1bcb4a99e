"""Migrated databases (an SQLite file and a PostgreSQL database) for in-process store tests, and
``running``: a started Services on each, with the default app and a hand-moved clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.flows.setup import initialise
from keyhall.server.services import Services
from keyhall.server.settings import Settings
from keyhall.server.store.db import create_engine
from keyhall.server.store.migrate import migrate
from tests.support.flows import ManualClock, Running
from tests.support.servers import create_postgres_database, drop_postgres_database


@pytest.fixture(scope="session")
def store_postgres_url() -> Iterator[str]:
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


def _database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new SQLite file, or the session's PostgreSQL database, by the fixture's parameter."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("store_postgres_url"))


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database; the PostgreSQL one is shared by the session, so tests use unique keys."""
    database = create_engine(_database_url(request, tmp_path))
    try:
        await migrate(database)
        yield database
    finally:
        await database.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    url = _database_url(request, tmp_path)
    clock = ManualClock()
    settings = Settings(database_url=url, secret_key="s" * 40, signing_key_refresh_s=0, hash_concurrency=1)  # type: ignore[call-arg]
    engine = create_engine(url)
    try:
        result = await initialise(engine, clock, settings.key_encryption_key())
    finally:
        await engine.dispose()
    services = await Services.start(settings, clock)
    try:
        app = await services.apps.get(result.app_id)
        assert app is not None
        yield services, app, clock
    finally:
        await services.stop()
