"""Reads and writes of pools, applications, users and keys: SQLAlchemy Core on an async connection.

Callers own the transaction (``keyhall.server.store.db.write_transaction``); nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.store.db import read_rows, write_one
from keyhall.server.store.tables import Application, Pool, TransportKey, User

users = cast(Table, User.__table__)
pools = cast(Table, Pool.__table__)
applications = cast(Table, Application.__table__)
transport_keys = cast(Table, TransportKey.__table__)


@dataclass(frozen=True)
class AppRow:
    app: Any
    pool: Any


async def get_app(conn: AsyncConnection, app_id: str) -> AppRow | None:
    """The application and its pool, or None."""
    app = (await conn.execute(select(applications).where(applications.c.id == app_id))).first()
    if app is None:
        return None
    pool = await _one(conn, select(pools).where(pools.c.id == app.pool_id))
    return AppRow(app=app, pool=pool)


async def first_app(conn: AsyncConnection) -> Any | None:
    return (await conn.execute(select(applications).order_by(applications.c.created_at).limit(1))).first()


async def first_pool(conn: AsyncConnection) -> Any | None:
    return (await conn.execute(select(pools).order_by(pools.c.created_at).limit(1))).first()


async def insert_pool(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(pools.insert().values(**values))


async def insert_app(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(applications.insert().values(**values))


async def insert_user(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    """Insert a user and return the stored row. Raises IntegrityError on a duplicate identifier.

    One statement (INSERT ... RETURNING; SQLite has it since 3.35), not an insert and a SELECT. The
    statement is built once and the values bound as parameters: building it per call (``.values(**v)``)
    was a good part of SQLAlchemy's share of a sign-up's event-loop time (bench.profile).
    """
    return (await conn.execute(_INSERT_USER, values)).one()


async def insert_user_alone(engine: AsyncEngine, values: dict[str, Any]) -> Any:
    """``insert_user`` as a statement of its own, committed when it returns (``store.db.write_one``)."""
    return await write_one(engine, _INSERT_USER, values)


_INSERT_USER = users.insert().returning(*users.c)


async def find_taken(
    engine: AsyncEngine,
    pool_id: str,
    *,
    email_norm: str | None,
    username_norm: str | None,
    phone_e164: str | None,
) -> set[str]:
    """Which of the given identifiers already belong to a user of the pool: {"email", "username", "phone"}."""
    given = {"email_norm": email_norm, "username_norm": username_norm, "phone_e164": phone_e164}
    params = {name: value for name, value in given.items() if value}
    if not params:
        return set()
    taken: set[str] = set()
    # One statement, no transaction; on an SQLite file read on the event loop (store.db.read_rows), not
    # through hand-offs to aiosqlite's thread.
    query = _find_taken_query(tuple(params))
    for row in await read_rows(engine, query, {"pool_id": pool_id, **params}):
        if email_norm and row.email_norm == email_norm:
            taken.add("email")
        if username_norm and row.username_norm == username_norm:
            taken.add("username")
        if phone_e164 and row.phone_e164 == phone_e164:
            taken.add("phone")
    return taken


@lru_cache(maxsize=8)
def _find_taken_query(columns: tuple[str, ...]) -> Select[Any]:
    """The uniqueness read for one combination of identifiers, built once (see ``insert_user``)."""
    return select(users.c.email_norm, users.c.username_norm, users.c.phone_e164).where(
        users.c.pool_id == bindparam("pool_id"), or_(*(users.c[name] == bindparam(name) for name in columns))
    )


def conflicting_field(error: IntegrityError) -> str | None:
    """Which unique index a failed insert hit: "email", "username", "phone", "external_id" or None.

    PostgreSQL names the index (uq_users_pool_email); SQLite names its columns (users.email_norm).
    """
    text = str(error.orig)
    for field, markers in (
        ("email", ("uq_users_pool_email", "users.email_norm")),
        ("username", ("uq_users_pool_username", "users.username_norm")),
        ("phone", ("uq_users_pool_phone", "users.phone_e164")),
        ("external_id", ("uq_users_pool_external_id", "users.external_id")),
    ):
        if any(marker in text for marker in markers):
            return field
    return None


async def list_users(conn: AsyncConnection, *, pool_id: str | None = None, limit: int = 100) -> list[Any]:
    query = select(users).order_by(users.c.created_at, users.c.id).limit(limit)
    if pool_id:
        query = query.where(users.c.pool_id == pool_id)
    return list(await conn.execute(query))


async def list_pool_ids(conn: AsyncConnection) -> list[str]:
    """Every pool's id, oldest first."""
    return [row.id for row in await conn.execute(select(pools.c.id).order_by(pools.c.created_at, pools.c.id))]


async def get_transport_keys(conn: AsyncConnection, pool_id: str) -> list[Any]:
    """The transport key rows of a pool, every kind and generation."""
    query = select(transport_keys).where(transport_keys.c.pool_id == pool_id)
    return list(await conn.execute(query.order_by(transport_keys.c.kind, transport_keys.c.generation)))


async def insert_transport_key(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Insert a key row; IntegrityError when another process inserted the same generation first."""
    await conn.execute(transport_keys.insert().values(**values))


async def retire_transport_keys(
    conn: AsyncConnection, pool_id: str, kind: str, below_generation: int, accept_until: datetime
) -> int:
    """Give the current keys of ``kind`` below ``below_generation`` a grace end; returns how many."""
    result = await conn.execute(
        transport_keys.update()
        .where(
            transport_keys.c.pool_id == pool_id,
            transport_keys.c.kind == kind,
            transport_keys.c.generation < below_generation,
            transport_keys.c.accept_until.is_(None),
        )
        .values(accept_until=accept_until)
    )
    return int(result.rowcount or 0)


async def delete_expired_transport_keys(conn: AsyncConnection, pool_id: str, now: datetime) -> int:
    """Remove the keys of a pool whose grace period is over; returns how many."""
    result = await conn.execute(
        transport_keys.delete().where(
            transport_keys.c.pool_id == pool_id,
            transport_keys.c.accept_until.is_not(None),
            transport_keys.c.accept_until <= now,
        )
    )
    return int(result.rowcount or 0)


async def _one(conn: AsyncConnection, query: Any) -> Any:
    return (await conn.execute(query)).one()
