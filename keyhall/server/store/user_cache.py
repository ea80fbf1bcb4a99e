"""Signed-in reads without a database round trip: each process keeps the users it read recently, and
forgets one the moment the database says it changed.

A get-profile reads one user (and whether the access token was revoked) by primary key, and nothing
else: it was the last database round trip of Keyhall's hottest read (docs/profiling.md). Identity
servers cache exactly this (Keycloak's user cache, invalidated across the cluster); what matters is
that a change is never served stale for long, and never when it can be told exactly:

- **SQLite** says exactly whether anything was committed since a moment: ``PRAGMA data_version``
  changes whenever another connection, in this process or another, commits. An entry is kept with the
  data version from before its read and used only while the version is unchanged. Any commit anywhere
  retires every entry, so a write-heavy SQLite server just reads the database as before.
- **PostgreSQL** tells listeners: triggers (migration 0006) send a notification on every UPDATE or
  DELETE of a user and every revoked access token, and each process LISTENs on one connection of its
  own, dropping what the notification names. A change made through another process is seen when its
  notification arrives, well under a millisecond after the commit on a local network. While the
  listening connection is down nothing is cached, and everything is dropped when it comes back; a
  round trip on it every second (``HEARTBEAT_S``) tells a connection that went silent (a partition, a
  hung host) from an idle one within two seconds more.

Entries also expire after ``max_age_s`` and the cache holds at most ``max_users``;
``KEYHALL_USER_CACHE_SIZE=0`` turns it off.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import make_url

log = structlog.get_logger("keyhall.store")

CHANNEL = "keyhall_user_changed"  # the triggers of migration 0006 notify here


@dataclass
class CachedUser:
    """A user's row as read with one access token, and what requests derived from it (``memo``)."""

    row: Any
    stamp: int
    expires: float
    tokens: set[str] = field(default_factory=set)  # jtis known not revoked as of ``row``
    memo: dict[str, Any] = field(default_factory=dict)


class UserCache:
    """``get`` a user for an access token, or read it and ``put`` it with the ``stamp`` taken before.

    ``stamp()`` is None while the cache cannot vouch for freshness (the listener is down): then nothing
    is served from it and nothing is kept.
    """

    def __init__(
        self,
        watcher: SqliteWatcher | PostgresWatcher,
        max_users: int = 10_000,
        max_age_s: float = 30.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watcher = watcher
        self._max_users = max_users
        self._max_age_s = max_age_s
        self._now = now
        self._users: OrderedDict[str, CachedUser] = OrderedDict()
        self._token_users: dict[str, str] = {}
        watcher.attach(self)

    def stamp(self) -> int | None:
        return self._watcher.stamp()

    def get(self, user_id: str, jti: str) -> CachedUser | None:
        entry = self._users.get(user_id)
        if entry is None or jti not in entry.tokens:
            return None
        if entry.stamp != self._watcher.stamp() or entry.expires <= self._now():
            self.drop_user(user_id)
            return None
        return entry

    def put(self, user_id: str, jti: str, row: Any, stamp: int | None) -> CachedUser:
        """Keep ``row`` (read after ``stamp`` was taken) unless something changed since the stamp."""
        entry = CachedUser(row=row, stamp=stamp or 0, expires=self._now() + self._max_age_s)
        if stamp is None or stamp != self._watcher.stamp():
            return entry  # a change may have raced the read: use it for this request, keep nothing
        old = self._users.get(user_id)
        if old is not None and old.stamp == stamp and old.row == row:
            entry = old  # the same snapshot: one entry collects the user's tokens (and its memo)
        else:
            self.drop_user(user_id)
            self._users[user_id] = entry
            if len(self._users) > self._max_users:
                self.drop_user(next(iter(self._users)))
        entry.tokens.add(jti)
        self._token_users[jti] = user_id
        return entry

    def drop_user(self, user_id: str) -> None:
        entry = self._users.pop(user_id, None)
        if entry is not None:
            for jti in entry.tokens:
                self._token_users.pop(jti, None)

    def drop_token(self, jti: str) -> None:
        user_id = self._token_users.pop(jti, None)
        if user_id is not None:
            self.drop_user(user_id)

    def clear(self) -> None:
        self._users.clear()
        self._token_users.clear()

    def __len__(self) -> int:
        return len(self._users)

    async def close(self) -> None:
        await self._watcher.close()


class SqliteWatcher:
    """The stamp is the database file's ``PRAGMA data_version``, read on a connection of its own.

    A private read-only connection on the event loop's thread: the pragma is answered from SQLite's
    shared memory (the WAL index) in microseconds, never waits for a lock.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def attach(self, cache: UserCache) -> None:
        pass  # SQLite tells nobody; the stamp is compared at every get

    def stamp(self) -> int | None:
        try:
            if self._conn is None:
                uri = Path(self._path).resolve().as_uri() + "?mode=ro"  # as_uri quotes '?' and '#'
                self._conn = sqlite3.connect(uri, uri=True, timeout=0, check_same_thread=False)
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            self._conn = None
            return None  # no file yet, or busy: read the database
        return int(row[0])

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresWatcher:
    """The stamp counts notifications; LISTENs on a connection of its own and reconnects when it drops."""

    RETRY_S = 1.0
    HEARTBEAT_S = 1.0

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._timeout_s = connect_timeout_s
        self._heartbeat_timeout_s = min(connect_timeout_s, 2.0)
        self._generation = 0
        self._listening = False
        self._cache: UserCache | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._up = asyncio.Event()  # set while listening

    def attach(self, cache: UserCache) -> None:
        self._cache = cache

    def stamp(self) -> int | None:
        return self._generation if self._listening else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keyhall-user-cache-listener")

    async def listening(self) -> None:
        """Wait until the listener is up (tests, start-up)."""
        await self._up.wait()

    async def _run(self) -> None:
        # Any failure (refused, reset, a timeout, an error of the server or of asyncpg) means the same:
        # stop caching, reconnect. The listener must never end while the process runs.
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._timeout_s)
            except Exception as error:
                log.warning("user_cache_listener_down", error=type(error).__name__, retry_s=self.RETRY_S)
                await asyncio.sleep(self.RETRY_S)
                continue
            self._lost.clear()
            conn.add_termination_listener(lambda _conn: self._lost.set())
            try:
                await conn.add_listener(CHANNEL, self._notified)
                self._conn = conn
                self._changed(listening=True)  # what was kept before may have missed notifications
                await self._heartbeat(conn)
            except Exception as error:
                log.warning("user_cache_listener_down", error=type(error).__name__, retry_s=self.RETRY_S)
            finally:
                self._changed(listening=False)
                self._conn = None
                conn.terminate()
            await asyncio.sleep(self.RETRY_S)

    async def _heartbeat(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is lost; raise when it stops answering.

        A connection cut without a reset (a partition, a frozen host) looks alive and delivers nothing:
        other hosts' changes would go unheard for the entries' whole max age. A round trip every
        ``HEARTBEAT_S`` proves the connection alive, and since the server sends in order, that every
        notification sent before it has arrived.
        """
        while not self._lost.is_set():
            try:
                await asyncio.wait_for(self._lost.wait(), self.HEARTBEAT_S)
            except TimeoutError:
                await conn.fetchval("SELECT 1", timeout=self._heartbeat_timeout_s)

    def _changed(self, *, listening: bool) -> None:
        self._listening = listening
        if listening:
            self._up.set()
        else:
            self._up.clear()
        self._generation += 1
        if self._cache is not None:
            self._cache.clear()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._generation += 1  # a read in flight since before this may be stale: its put is refused
        if self._cache is None:
            return
        kind, _, key = payload.partition(":")
        if kind == "u":
            self._cache.drop_user(key)
        elif kind == "t":
            self._cache.drop_token(key)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._conn is not None:
            await self._conn.close(timeout=1)


def open_user_cache(database_url: str, max_users: int, max_age_s: float) -> UserCache | None:
    """The user cache for the server's database, listening already on PostgreSQL; None when
    ``max_users`` is 0 or the database is SQLite in memory (one connection: nothing to watch)."""
    if max_users <= 0:
        return None
    url = make_url(database_url)
    watcher: SqliteWatcher | PostgresWatcher
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return None
        watcher = SqliteWatcher(url.database)
    else:
        watcher = PostgresWatcher(database_url)
        watcher.start()
    return UserCache(watcher, max_users=max_users, max_age_s=max_age_s)
