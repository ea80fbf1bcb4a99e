"""Setting a database up: schema, the default pool and application, the transport keys.

Safe to run from several processes at once: the work happens under one lock (PostgreSQL advisory lock,
SQLite write lock), and each step only fills what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.crypto.kek import KeyEncryptionKey
from keyhall.server.crypto.passwords import DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM, DEFAULT_TIME_COST
from keyhall.server.flows.transport_keys import ensure_pool_keys
from keyhall.server.identity.app import hash_secret
from keyhall.server.identity.ids import new_id, new_secret
from keyhall.server.store import repository
from keyhall.server.store.db import write_transaction
from keyhall.server.store.migrate import lock_for_setup, migrate


@dataclass(frozen=True)
class InitResult:
    app_id: str
    app_secret: str | None
    pool_id: str
    created: bool


@dataclass(frozen=True)
class NewApp:
    app_id: str
    app_secret: str
    pool_id: str
    name: str


async def initialise(engine: AsyncEngine, clock: Clock, kek: KeyEncryptionKey | None = None) -> InitResult:
    """Migrate, then create the default pool and app if there is no pool yet.

    With ``kek``, also create the transport keys of every pool that lacks them (sealed with it);
    without, servers create them on first use. The app secret is returned only when the app is created
    here; only its hash is stored.
    """
    await migrate(engine)
    async with write_transaction(engine) as conn:
        await lock_for_setup(conn)
        pool = await repository.first_pool(conn)
        if pool is None:
            pool_id = await _create_pool(conn, "Default user pool", clock)
        if kek is not None:
            for each_pool in await repository.list_pool_ids(conn):
                await ensure_pool_keys(conn, kek, each_pool, clock)
        if pool is not None:
            app = await repository.first_app(conn)
            if app is not None:
                return InitResult(app_id=app.id, app_secret=None, pool_id=pool.id, created=False)
            created = await _create_app(conn, pool.id, "Default application", clock)
        else:
            created = await _create_app(conn, pool_id, "Default application", clock)
    return InitResult(
        app_id=created.app_id, app_secret=created.app_secret, pool_id=created.pool_id, created=True
    )


async def create_pool(
    engine: AsyncEngine, name: str, clock: Clock, kek: KeyEncryptionKey | None = None
) -> str:
    """A new user pool with the default rules, and its transport keys when ``kek`` is given."""
    async with write_transaction(engine) as conn:
        pool_id = await _create_pool(conn, name, clock)
        if kek is not None:
            await ensure_pool_keys(conn, kek, pool_id, clock)
    return pool_id


async def create_app(engine: AsyncEngine, name: str, clock: Clock, pool_id: str | None = None) -> NewApp:
    """A new application in ``pool_id`` (default: the first pool). Raises LookupError without a pool."""
    async with write_transaction(engine) as conn:
        if pool_id is None:
            pool = await repository.first_pool(conn)
            if pool is None:
                raise LookupError("there is no user pool yet: run `keyhall init` first")
            pool_id = pool.id
        return await _create_app(conn, pool_id, name, clock)


async def _create_pool(conn: AsyncConnection, name: str, clock: Clock) -> str:
    """A new pool. Callers with the KEK give it its transport keys (``ensure_pool_keys``) in the same
    transaction; a pool without them gets them from the first server that needs them."""
    now = clock()
    pool_id = new_id()
    values: dict[str, Any] = {
        "id": pool_id,
        "name": name,
        "allow_self_registration": True,
        "password_strength": 0,
        "password_nist": True,
        "argon2_time_cost": DEFAULT_TIME_COST,
        "argon2_memory_kib": DEFAULT_MEMORY_KIB,
        "argon2_parallelism": DEFAULT_PARALLELISM,
        "created_at": now,
        "updated_at": now,
    }
    await repository.insert_pool(conn, values)
    return pool_id


async def _create_app(conn: AsyncConnection, pool_id: str, name: str, clock: Clock) -> NewApp:
    now = clock()
    app_id, secret = new_id(), new_secret()
    await repository.insert_app(
        conn,
        {
            "id": app_id,
            "pool_id": pool_id,
            "name": name,
            "secret_sha256": hash_secret(secret),
            "created_at": now,
            "updated_at": now,
        },
    )
    return NewApp(app_id=app_id, app_secret=secret, pool_id=pool_id, name=name)
