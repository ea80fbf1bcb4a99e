"""Engines for the two supported databases: an SQLite file (default) and PostgreSQL (scale-out).

Users write plain URLs (``sqlite:///./keyhall.db``, ``postgresql://user@host/db``); this module picks
the async driver (aiosqlite, asyncpg) and sets SQLite up for many writers: WAL, a 30 s busy timeout and
``BEGIN IMMEDIATE`` for write transactions, so a writer waits for the lock instead of failing with
"database is locked" when it upgrades from a read.

On PostgreSQL the engine is built to survive the database going away and coming back (a restart, a
failover) without a restart of Keyhall: connecting is bounded (asyncpg's own default is 60 s), the
server's engine bounds every statement and the wait for a pooled connection (``timeout_s``), a
connection that sat idle is pinged at checkout so that connections from before a restart are replaced
rather than handed out (``_ping_idle_connections``), and a lost connection raises an error the server
answers with 503 (see ``_on_error``).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import asyncpg.exceptions as asyncpg_errors
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, ExceptionContext, Row, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import SingletonThreadPool, StaticPool
from sqlalchemy.sql import Executable

SQLITE_BUSY_TIMEOUT_S = 30
_WRITE = "keyhall_write"
_SINGLE = "keyhall_single_statement"
# Connecting to PostgreSQL when no ``timeout_s`` is given (the CLI): long enough for a database across a
# slow network, far below asyncpg's default of 60 s.
CONNECT_TIMEOUT_S = 10.0
# Waiting for a free pooled connection, likewise (SQLAlchemy's default is 30 s).
POOL_TIMEOUT_S = 10.0
# Connections older than this are closed and replaced at their next checkout, so that none outlives an
# idle cut by a firewall or proxy in between for long (the ping at checkout catches the rest).
POOL_RECYCLE_S = 1800
# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
PING_IDLE_AFTER_S = 0.5


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


def create_engine(url: str, *, pool_size: int = 10, timeout_s: float | None = None) -> AsyncEngine:
    """An engine for ``url``.

    ``timeout_s`` (the server's ``KEYHALL_DB_TIMEOUT_S``) bounds, on PostgreSQL, connecting, waiting for a
    pooled connection and every statement, so that a database that stopped answering (a network
    partition, a frozen host: no connection refused, no reset) fails a request with 503 within it rather
    than hanging it. Without it (the CLI: migrations, bulk loads) statements may run as long as they need.
    """
    target = async_url(url)
    # hide_parameters: an error's text must not carry bound values (a password hash, an email) to the log.
    if target.get_backend_name() == "sqlite":
        # A file database gets a queue pool as large as PostgreSQL's: with SQLAlchemy's default (5 + 10
        # overflow) a busy worker kept opening and closing overflow connections, each a thread, an
        # sqlite3 open and four PRAGMAs (bench.profile: 0.5 of 2.5 ms of CPU per get-profile at 64
        # clients went to connection threads that ended).
        in_memory = target.database in (None, "", ":memory:")  # a static pool: no sizes to give
        sizes = {} if in_memory else {"pool_size": pool_size, "max_overflow": 0}
        engine = create_async_engine(
            target, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True, **sizes
        )
        _configure_sqlite(engine)
        if not in_memory:
            reader = _sqlite_readers[engine] = _sqlite_reader(target)
            writer = _sqlite_writers[engine] = _SqliteWriter(target)
            event.listen(engine.sync_engine, "engine_disposed", lambda _engine: reader.dispose())
            event.listen(engine.sync_engine, "engine_disposed", lambda _engine: writer.dispose())
        return engine
    connect_args: dict[str, Any] = {"timeout": timeout_s or CONNECT_TIMEOUT_S}
    if timeout_s is not None:
        connect_args["command_timeout"] = timeout_s  # asyncpg: the default timeout of every statement
    engine = create_async_engine(
        target,
        # Every connection is kept: with overflow connections (closed again at check-in whenever the
        # pool is full) a worker with more requests in flight than pooled connections opened and closed
        # a connection per request (bench reads at 64 clients: half the rate of 16 clients).
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout_s or POOL_TIMEOUT_S,
        pool_recycle=POOL_RECYCLE_S,
        hide_parameters=True,
        connect_args=connect_args,
    )
    _ping_idle_connections(engine)
    event.listen(engine.sync_engine, "handle_error", _on_error)
    event.listen(engine.sync_engine.pool, "invalidate", _abort_invalidated)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Ping a pooled connection at checkout when it has been idle for more than ``PING_IDLE_AFTER_S``.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: on asyncpg a transaction's start and end
    around an empty statement, a quarter of the server's CPU for a get-profile (bench.profile). A
    connection checked in moments ago by a request that succeeded is as good as a pinged one, so, as
    HikariCP does with its 500 ms bypass window, only connections that sat idle longer are pinged. What
    pinging protects against stays covered: a connection that broke while idle (a database restart, an
    idle cut by a firewall) is pinged and replaced before use; one that breaks in use fails that request
    with 503 and makes the pool replace every connection older than the failure (``_on_error``).
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "connect")
    @event.listens_for(pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        # A connection just opened needs no ping either (pool_pre_ping skips those too).
        if record is not None:
            record.info["keyhall_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("keyhall_idle_since")
        if idle_since is not None and time.monotonic() - idle_since <= PING_IDLE_AFTER_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool closes this connection and checks out (or opens) another one.
            raise exc.DisconnectionError(f"pooled connection failed a ping: {type(error).__name__}") from None


def _abort_invalidated(dbapi_connection: Any, _record: Any, _error: BaseException | None) -> None:
    """Drop an invalidated connection at once instead of closing it politely.

    SQLAlchemy's asyncpg adapter closes an invalidated connection with a goodbye to the server and waits
    up to 2 s for it, inside the request that found it broken; a server that stopped answering never
    replies, so every such request took 2 s longer than its own timeouts (and than the request timeout).
    A connection is invalidated because it is broken or was abandoned mid-statement: nothing is lost by
    aborting it (PostgreSQL rolls back whatever it had open when its socket closes).
    """
    dbapi_connection.driver_connection.terminate()


class DatabaseConnectionLost(exc.OperationalError):
    """A connection broke in the middle of a statement (the database restarted or went away)."""


def _on_error(context: ExceptionContext) -> BaseException | None:
    """Make a lost connection an OperationalError (answered 503), whatever type the driver gave it.

    asyncpg's ConnectionDoesNotExistError ("connection was closed in the middle of operation") reaches
    SQLAlchemy as a bare DBAPIError, the type of programming errors too, so the type alone cannot tell the
    server "the database went away" (503) from a bug (500); SQLAlchemy's disconnect detection can. The
    pool is invalidated as usual (``is_disconnect`` stays set): other connections of before are replaced.
    """
    error = context.sqlalchemy_exception
    if not isinstance(context.original_exception, Exception):
        # A cancellation (the request timeout) in mid-statement: SQLAlchemy drops the connection as it
        # would a lost one, but the cancellation must stay what it is, or the request timeout's 503
        # would be answered as "the database cannot be reached".
        return None
    if context.is_pre_ping or not context.is_disconnect or isinstance(error, DATABASE_UNAVAILABLE):
        return None  # a failed ping just gets a fresh connection; the rest already answer 503
    return DatabaseConnectionLost(
        context.statement, None, context.original_exception, hide_parameters=True, connection_invalidated=True
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


async def write_one(engine: AsyncEngine, statement: Executable, params: dict[str, Any]) -> Row[Any]:
    """Run ONE write statement that returns a row (INSERT ... RETURNING) on its own, committed.

    On an SQLite file the statement runs in one hand-off to a thread of its own (``_SqliteWriter``)
    instead of aiosqlite's four (execute, fetch, close the cursor, reset the connection), behind the
    process's writer queue; elsewhere as ``single_write``.
    """
    writer = _sqlite_writers.get(engine)
    if writer is None:
        async with single_write(engine) as conn:
            return (await conn.execute(statement, params)).one()
    async with _local_writer_lock(engine):
        return await writer.run(statement, params)


@asynccontextmanager
async def single_write(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for ONE write statement, which commits on its own: no BEGIN and COMMIT around it.

    One statement is atomic whether or not a transaction surrounds it, and a lone INSERT ... RETURNING
    needs nothing more; the transaction made it three round trips instead of one (on PostgreSQL BEGIN
    and COMMIT are messages of their own, on SQLite hand-offs to aiosqlite's thread). On SQLite the
    statement still queues behind the process's other writers (see ``write_transaction``).
    """
    async with _local_writer_lock(engine), single_statement(engine) as conn:
        yield conn


@asynccontextmanager
async def read_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn, conn.begin():
        yield conn


@asynccontextmanager
async def single_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for ONE read-only statement, run without BEGIN and COMMIT around it.

    A single statement is atomic and sees one snapshot on its own, so the explicit transaction of
    ``read_transaction`` buys a one-statement read nothing and costs two round trips to the database
    (on SQLite, two hand-offs to aiosqlite's thread, each a task switch; on PostgreSQL two messages to
    the server). Sign-up's uniqueness read goes through here, and so does ``read_one`` when it cannot
    read SQLite directly. Run a second statement in it only if it may see a later snapshot than the
    first.
    """
    async with engine.connect() as conn:
        if is_sqlite(engine):
            # Not isolation_level="AUTOCOMMIT": aiosqlite sets it on its thread, two more hand-offs (set,
            # and reset at check-in). The connection is in sqlite3's autocommit mode already (see
            # _configure_sqlite); the "begin" listener just leaves out the BEGIN.
            yield await conn.execution_options(**{_SINGLE: True})
        else:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")


async def read_one(engine: AsyncEngine, statement: Executable, params: dict[str, Any]) -> Row[Any] | None:
    """The first row of one read-only statement (see ``single_statement``).

    On an SQLite file the statement runs on the calling thread, through a read-only connection of its
    own, when it can do so without waiting (see ``_sqlite_reader``); else, and on PostgreSQL, through
    the engine's async driver.
    """
    rows = await read_rows(engine, statement, params, first_only=True)
    return rows[0] if rows else None


async def read_rows(
    engine: AsyncEngine, statement: Executable, params: dict[str, Any], *, first_only: bool = False
) -> list[Row[Any]]:
    """Every row of one read-only statement (a few: they are read at once), as ``read_one`` reads."""
    reader = _sqlite_readers.get(engine)
    if reader is not None:
        try:
            with reader.connect() as conn:
                return _rows(conn.execute(statement, params), first_only)
        except exc.OperationalError:
            pass  # busy (a writer resetting the WAL, a checkpoint) or gone: the async path waits properly
    async with single_statement(engine) as conn:
        return _rows(await conn.execute(statement, params), first_only)


def _rows(result: Any, first_only: bool) -> list[Row[Any]]:
    if first_only:
        row = result.first()
        return [] if row is None else [row]
    return list(result.all())


_sqlite_readers: weakref.WeakKeyDictionary[AsyncEngine, Engine] = weakref.WeakKeyDictionary()


def _sqlite_reader(target: URL) -> Engine:
    """A synchronous engine for ``read_one`` on an SQLite file: one read-only connection per thread.

    A point read through aiosqlite is four hand-offs to its thread and back (execute, fetch, close the
    cursor, end the transaction): about 0.3 ms of CPU for a read SQLite itself answers in a few
    microseconds from its page cache. In WAL mode a reader never waits for a writer, so the event loop
    can run such a read itself. It must never sleep on a lock there: the busy timeout is 0, and
    ``read_one`` falls back to the async path on SQLITE_BUSY. ``query_only`` makes a slip (a write
    through this engine) an error instead of a write outside the writer queue.
    """
    reader = sa_create_engine(
        target.set(drivername="sqlite+pysqlite"),
        poolclass=SingletonThreadPool,
        connect_args={"timeout": 0, "check_same_thread": False},
        hide_parameters=True,
    )

    @event.listens_for(reader, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit: each SELECT is its own snapshot
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    return reader


class _SqliteWriter:
    """One synchronous connection to an SQLite file and the one thread that uses it, for ``write_one``.

    Callers hold the process's SQLite writer queue, so one connection and one thread are enough; the
    thread may sleep in SQLite's busy handler (another process holds the write lock) without holding
    up the event loop. Each statement commits on its own (the connection is in autocommit mode).
    """

    def __init__(self, target: URL) -> None:
        self._engine = sa_create_engine(
            target.set(drivername="sqlite+pysqlite"),
            poolclass=StaticPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            hide_parameters=True,
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyhall-sqlite-writer")

        # The engine's own settings; no BEGIN (below): each statement is its own transaction.
        event.listen(self._engine, "connect", _prepare_sqlite_connection)

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn: Any) -> None:
            pass  # no BEGIN: sqlite3 is in autocommit mode, and the statement commits when it ends

    async def run(self, statement: Executable, params: dict[str, Any]) -> Row[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, statement, params)

    def _run(self, statement: Executable, params: dict[str, Any]) -> Row[Any]:
        with self._engine.connect() as conn:
            return conn.execute(statement, params).one()

    def dispose(self) -> None:
        self._thread.shutdown(wait=True)
        self._engine.dispose()


_sqlite_writers: weakref.WeakKeyDictionary[AsyncEngine, _SqliteWriter] = weakref.WeakKeyDictionary()


_writer_locks: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


def _local_writer_lock(engine: AsyncEngine) -> AbstractAsyncContextManager[Any]:
    if not is_sqlite(engine):
        return nullcontext()
    lock = _writer_locks.get(engine)
    if lock is None:
        lock = _writer_locks[engine] = asyncio.Lock()
    return lock


def _prepare_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    """Every writing SQLite connection's settings: sqlite3's own transaction handling off (autocommit
    until someone says BEGIN), WAL, the busy timeout, foreign keys, and fsync at checkpoints only."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see "begin" below).
    event.listen(sync_engine, "connect", _prepare_sqlite_connection)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get(_SINGLE, False):
            return  # read_one: the statement is its own transaction
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE, False) else "BEGIN")
