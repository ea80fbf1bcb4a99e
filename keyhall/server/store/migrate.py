"""Create or upgrade the schema with Alembic, safely when several processes start at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.store.db import write_transaction

MIGRATIONS = Path(__file__).parent / "migrations"
# An arbitrary constant: the PostgreSQL advisory lock that serialises schema upgrades across processes.
_MIGRATION_LOCK = 0x6B657968


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database to the newest revision (a no-op when it is already there)."""
    async with write_transaction(engine) as conn:
        await lock_for_setup(conn)
        await conn.run_sync(_upgrade)


async def lock_for_setup(conn: AsyncConnection) -> None:
    """Serialise set-up work across processes (SQLite already holds its write lock here)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})


async def current_heads(engine: AsyncEngine) -> set[str]:
    """The revisions the database is at (empty before the first migration)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_database_heads)


async def schema_is_current(engine: AsyncEngine) -> bool:
    """Whether the database is at every head revision this version of Keyhall knows."""
    return await current_heads(engine) == code_heads()


def code_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _database_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


def _upgrade(connection: Connection) -> None:
    # "heads": features may add migrations on parallel branches of the revision graph.
    command.upgrade(alembic_config(connection), "heads")
