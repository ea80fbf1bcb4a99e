"""The transport keys of user pools in the database: creation, loading into rings, rotation.

Each pool has, per kind (``rsa``, ``sm2``), one current key and maybe older keys still accepted until the
end of their grace period. Private keys are sealed with the key-encryption key, bound to their row
(``transport:<kind>:<pool_id>:<id>``), so that a copy of the database does not hand them out and a
sealed key cannot be moved to another pool or kind.

Several processes may create or rotate at once: ``(pool_id, kind, generation)`` is unique, so of two
inserts of the same generation one fails; creation then just reloads what the other process made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.crypto.kek import KeyEncryptionKey
from keyhall.server.crypto.transport import KINDS, KeyRing, RingKey, TransportKey, generate_key, load_key
from keyhall.server.identity.ids import new_id
from keyhall.server.store import repository
from keyhall.server.store.db import read_transaction, write_transaction

__all__ = [
    "DEFAULT_GRACE",
    "KindRotation",
    "PoolRotation",
    "TransportKeyStore",
    "ensure_pool_keys",
    "parse_duration",
    "rotate_transport_keys",
    "seal_context",
]

DEFAULT_GRACE = timedelta(hours=24)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` or a plain number of seconds, as a timedelta (0 allowed).

    Hand-written: the CLI needs only these four units, and ISO-8601 durations (which pydantic parses)
    are not what people type for a grace period.
    """
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else "s"
    number = value[:-1] if value[-1:] in _UNITS else value
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration; use e.g. 90s, 30m, 24h or 7d") from None
    if not amount >= 0 or amount == float("inf"):
        raise ValueError(f"{text!r} is not a duration of zero or more")
    try:
        return timedelta(seconds=amount * _UNITS[unit])
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def seal_context(kind: str, pool_id: str, key_id: str) -> str:
    """The associated data a private key is sealed with: its kind, pool and row."""
    return f"transport:{kind}:{pool_id}:{key_id}"


async def ensure_pool_keys(
    conn: AsyncConnection, kek: KeyEncryptionKey, pool_id: str, clock: Clock, cpu: CpuPool | None = None
) -> list[str]:
    """Create the pool's missing current keys (in the caller's transaction); returns the kinds made."""
    rows = await repository.get_transport_keys(conn, pool_id)
    present = {row.kind for row in rows if row.accept_until is None}
    made = []
    for kind in KINDS:
        if kind in present:
            continue
        generation = max((row.generation for row in rows if row.kind == kind), default=0) + 1
        key = await cpu.run(generate_key, kind) if cpu is not None else generate_key(kind)
        await _insert(conn, kek, pool_id, key, generation, clock())
        made.append(kind)
    return made


@dataclass(frozen=True)
class KindRotation:
    """What a rotation did for one kind of one pool."""

    kind: str
    new_key_id: str
    generation: int
    retired: int  # keys that were current and are now in their grace period
    accept_until: datetime  # the end of that grace period


@dataclass(frozen=True)
class PoolRotation:
    """What a rotation did for one pool."""

    pool_id: str
    kinds: list[KindRotation]
    removed: int  # keys whose grace period was already over, deleted


async def rotate_transport_keys(
    engine: AsyncEngine,
    kek: KeyEncryptionKey,
    clock: Clock,
    *,
    pool_id: str | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> list[PoolRotation]:
    """A new current key of every kind for ``pool_id`` (None: every pool); the old ones accepted for
    ``grace``. Raises LookupError for an unknown pool, ValueError for a negative grace."""
    if grace < timedelta(0):
        raise ValueError("the grace period cannot be negative")
    results: list[PoolRotation] = []
    async with write_transaction(engine) as conn:
        pool_ids = await repository.list_pool_ids(conn)
        if pool_id is not None:
            if pool_id not in pool_ids:
                raise LookupError(f"there is no user pool {pool_id!r}")
            pool_ids = [pool_id]
        now = clock()
        for pool in pool_ids:
            removed = await repository.delete_expired_transport_keys(conn, pool, now)
            rows = await repository.get_transport_keys(conn, pool)
            kinds = []
            for kind in KINDS:
                generation = max((row.generation for row in rows if row.kind == kind), default=0) + 1
                key_id = await _insert(conn, kek, pool, generate_key(kind), generation, now)
                retired = await repository.retire_transport_keys(conn, pool, kind, generation, now + grace)
                kinds.append(KindRotation(kind, key_id, generation, retired, now + grace))
            results.append(PoolRotation(pool, kinds, removed))
    return results


class TransportKeyStore:
    """Loads pools' key rings for ``PasswordTransport``; parsed keys are kept by row id, so that a reload
    costs one SELECT and only new rows are unsealed and parsed (a PEM costs milliseconds)."""

    def __init__(self, engine: AsyncEngine, kek: KeyEncryptionKey, clock: Clock, cpu: CpuPool) -> None:
        self._engine = engine
        self._kek = kek
        self._clock = clock
        self._cpu = cpu
        self._parsed: dict[str, dict[str, TransportKey]] = {}  # pool id -> row id -> key

    async def load(self, pool_id: str | None) -> KeyRing:
        """The ring of ``pool_id`` (None: the first pool), creating missing keys first."""
        async with read_transaction(self._engine) as conn:
            pool = pool_id if pool_id is not None else await _first_pool_id(conn)
            rows = await repository.get_transport_keys(conn, pool)
        if not _complete(rows):
            try:
                async with write_transaction(self._engine) as conn:
                    await ensure_pool_keys(conn, self._kek, pool, self._clock, self._cpu)
            except IntegrityError:
                pass  # another process made them at the same moment: read theirs
            async with read_transaction(self._engine) as conn:
                rows = await repository.get_transport_keys(conn, pool)
        return await self._ring(pool, rows)

    async def _ring(self, pool_id: str, rows: Sequence[Any]) -> KeyRing:
        known = self._parsed.get(pool_id, {})
        parsed: dict[str, TransportKey] = {}
        entries = []
        for row in rows:
            key = known.get(row.id)
            if key is None:
                private = self._kek.open(row.private_key_sealed, seal_context(row.kind, pool_id, row.id))
                key = await self._cpu.run(load_key, row.kind, private.decode("utf-8"))
            parsed[row.id] = key
            entries.append(RingKey(row.id, key, row.accept_until))
        self._parsed[pool_id] = parsed  # keys deleted from the database are forgotten here too
        return KeyRing(pool_id, entries)


def _complete(rows: Sequence[Any]) -> bool:
    current = {row.kind for row in rows if row.accept_until is None}
    return all(kind in current for kind in KINDS)


async def _first_pool_id(conn: AsyncConnection) -> str:
    pool = await repository.first_pool(conn)
    if pool is None:
        raise LookupError("there is no user pool yet: run `keyhall init` first")
    return str(pool.id)


async def _insert(
    conn: AsyncConnection,
    kek: KeyEncryptionKey,
    pool_id: str,
    key: TransportKey,
    generation: int,
    now: datetime,
) -> str:
    key_id = new_id()
    sealed = kek.seal(key.private_text().encode("utf-8"), seal_context(key.kind, pool_id, key_id))
    await repository.insert_transport_key(
        conn,
        {
            "id": key_id,
            "pool_id": pool_id,
            "kind": key.kind,
            "generation": generation,
            "private_key_sealed": sealed,
            "public_key": key.public_key,
            "accept_until": None,
            "created_at": now,
        },
    )
    return key_id
