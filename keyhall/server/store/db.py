"""Engines for the two supported databases: an SQLite file (default) and PostgreSQL (scale-out).

Users write plain URLs (``sqlite:///./keyhall.db``, ``postgresql://user@host/db``); this module picks
the async driver (aiosqlite, asyncpg) and sets SQLite up for many writers: WAL, a 30 s busy timeout and
``BEGIN IMMEDIATE`` for write transactions, so a writer waits for the lock instead of failing with
"database is locked" when it upgrades from a read.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import asyncpg.exceptions as asyncpg_errors
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_S = 30
_WRITE = "keyhall_write"


# Failures that mean "the database is not there right now" (answered 503), not a bug (500): lost or
# refused connections, a full connection pool, a dropped database.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    OSError,
    # asyncpg raises these unwrapped while the pool opens a new connection.
    asyncpg_errors.PostgresConnectionError,
    asyncpg_errors.InvalidCatalogNameError,
    asyncpg_errors.InvalidAuthorizationSpecificationError,
    asyncpg_errors.OperatorInterventionError,
    asyncpg_errors.InsufficientResourcesError,
)


class DatabaseURLError(ValueError):
    """The database URL is not one Keyhall can use; the message says what to write instead."""


def async_url(url: str) -> URL:
    """Map a user's database URL to the async driver Keyhall uses for it."""
    try:
        parsed = make_url(url)
    except Exception as error:  # sqlalchemy raises ArgumentError with a terse message
        raise DatabaseURLError(f"cannot parse database URL {url!r}: {error}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise DatabaseURLError(
        f"unsupported database {backend!r}: use sqlite:///path/to/keyhall.db or postgresql://user@host/db"
    )


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    target = async_url(url)
    # hide_parameters: an error's text must not carry bound values (a password hash, an email) to the log.
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(
            target, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        target, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
    )


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: on SQLite it takes the write lock up front (BEGIN IMMEDIATE).

    On SQLite the writers of one process also queue on an asyncio lock first. SQLite admits one writer
    at a time anyway, and without the queue a deadlock appears under load: a connection's worker thread
    sleeps in SQLite's busy handler holding that connection's mutex, the garbage collector on the event
    loop thread finalises an old cursor of the same connection and blocks on that mutex, and the writer
    that holds the database lock can no longer be scheduled to commit. With the queue, only a writer
    whose lock holder is in another process ever waits in the busy handler.
    """
    async with _local_writer_lock(engine), engine.connect() as conn:
        conn = await conn.execution_options(**{_WRITE: True})
        async with conn.begin():
            yield conn


@asynccontextmanager
async def read_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn, conn.begin():
        yield conn


_writer_locks: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


def _local_writer_lock(engine: AsyncEngine) -> AbstractAsyncContextManager[Any]:
    if not is_sqlite(engine):
        return nullcontext()
    lock = _writer_locks.get(engine)
    if lock is None:
        lock = _writer_locks[engine] = asyncio.Lock()
    return lock


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
