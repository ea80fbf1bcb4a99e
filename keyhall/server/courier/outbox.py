"""The transactional outbox: messages are rows written in the same transaction as the code they carry,
and a worker task in every server process delivers them.

A send request is answered only after its transaction commits, so an acknowledged message is never lost;
an SMTP server that is down only delays it. Rows move ``pending -> sending -> sent``; a failed attempt
puts the row back to ``pending`` with an exponential delay (capped) until the last attempt marks it
``failed``. Without a transport for its kind a row is stored as ``dev`` (the dev outbox) and never sent.

Claims. A worker claims due rows in one write transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so concurrent workers of several processes take disjoint rows; on SQLite the transaction
holds the one write lock (``BEGIN IMMEDIATE``), so the select-then-update is already exclusive. The claim
sets ``claim_token`` and a lease; the outcome is written only ``WHERE claim_token = <ours>``, so a worker
never records over another's claim.

Crashes: at-least-once. A worker that dies after the SMTP server accepted a message but before it wrote
``sent`` leaves a ``sending`` row whose lease runs out; another worker then sends it again. We prefer that
rare duplicate (the same code, harmless) to at-most-once, where such a crash would lose the message and
leave the user waiting out the resend throttle. The lease (``KEYHALL_OUTBOX_LEASE_S``) is longer than a
send can take, so a live worker's claim is never taken over: no duplicates without a crash.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.clock import Clock, system_clock
from keyhall.server.courier.message import DeliveryError, Kind, Message, PermanentDeliveryError, Transport
from keyhall.server.crypto.kek import KeyEncryptionKey
from keyhall.server.identity.ids import new_id
from keyhall.server.metrics import set_courier_queue_depth
from keyhall.server.store.db import is_sqlite, read_transaction, write_transaction
from keyhall.server.store.tables import OutboxMessage

log = structlog.get_logger("keyhall.courier")

outbox = cast(Table, OutboxMessage.__table__)

BATCH = 20
# How often a worker counts the waiting messages for the keyhall_courier_queue_depth gauge.
_DEPTH_EVERY_S = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_s: float = 2.0
    cap_s: float = 300.0
    lease_s: float = 120.0
    poll_s: float = 1.0

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt: base, 2 x base, 4 x base, ... up to the cap."""
        return float(min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1)))


def seal_context(message_id: str) -> str:
    return f"outbox:{message_id}"


class Outbox:
    """Queue messages (inside the caller's transaction) and deliver them from a background task."""

    def __init__(
        self,
        engine: AsyncEngine,
        kek: KeyEncryptionKey,
        transports: Mapping[Kind, Transport | None],
        retry: RetryPolicy | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._engine = engine
        self._kek = kek
        self._transports = dict(transports)
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def dev_kinds(self) -> list[str]:
        """The kinds of message that go to the dev outbox (no transport configured)."""
        kinds: tuple[Kind, ...] = ("email", "sms")
        return [kind for kind in kinds if self._transports.get(kind) is None]

    async def enqueue(self, conn: AsyncConnection, pool_id: str, message: Message) -> str:
        """Write ``message`` in the caller's transaction; it is delivered after that commits."""
        message_id = new_id()
        now = self._clock()
        payload = json.dumps({**message.to_dict(), "id": message_id}, ensure_ascii=False).encode()
        await conn.execute(
            outbox.insert().values(
                id=message_id,
                pool_id=pool_id,
                kind=message.kind,
                state="pending" if self._transports.get(message.kind) else "dev",
                payload=self._kek.seal(payload, seal_context(message_id)),
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        return message_id

    def wake(self) -> None:
        """Tell this process's worker that a message is waiting (others find it by polling)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None and len(self.dev_kinds) < 2:
            self._task = asyncio.create_task(self._run(), name="keyhall-outbox")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._wake.set()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def queue_depth(self) -> int:
        """How many messages wait for delivery (pending or being sent), in every process's queue."""
        waiting = select(func.count()).select_from(outbox).where(outbox.c.state.in_(("pending", "sending")))
        async with read_transaction(self._engine) as conn:
            return int((await conn.execute(waiting)).scalar_one())

    async def _run(self) -> None:
        counted_at = -math.inf
        while not self._stopping:
            self._wake.clear()
            try:
                handled = await self.deliver_due()
                if time.monotonic() - counted_at >= _DEPTH_EVERY_S:
                    set_courier_queue_depth(await self.queue_depth())
                    counted_at = time.monotonic()
            except Exception as exc:  # the database may be away for a while: keep the worker alive
                log.warning("outbox_worker_error", exc_type=type(exc).__name__)
                handled = 0
            if handled:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._retry.poll_s)
            except TimeoutError:
                pass

    async def deliver_due(self) -> int:
        """Claim the due messages and try to deliver each once; returns how many were claimed."""
        token = uuid.uuid4().hex
        rows = await self._claim(token)
        if rows:
            await asyncio.gather(*(self._deliver(row, token) for row in rows))
        return len(rows)

    async def _claim(self, token: str) -> list[Any]:
        now = self._clock()
        due = or_(
            and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now),
            and_(outbox.c.state == "sending", outbox.c.lease_until <= now),
        )
        query = select(outbox.c.id).where(due).order_by(outbox.c.next_attempt_at).limit(BATCH)
        if not is_sqlite(self._engine):
            query = query.with_for_update(skip_locked=True)
        async with write_transaction(self._engine) as conn:
            ids = [row.id for row in await conn.execute(query)]
            if not ids:
                return []
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids), due)
                .values(
                    state="sending",
                    claim_token=token,
                    lease_until=now + timedelta(seconds=self._retry.lease_s),
                    attempts=outbox.c.attempts + 1,
                )
            )
            claimed = select(outbox).where(outbox.c.id.in_(ids), outbox.c.claim_token == token)
            return list(await conn.execute(claimed))

    async def _deliver(self, row: Any, token: str) -> None:
        transport = self._transports.get(row.kind)
        try:
            if transport is None:
                raise PermanentDeliveryError(f"no transport for {row.kind} any more")
            message = Message.from_dict(json.loads(self._kek.open(row.payload, seal_context(row.id))))
            await transport.send(message)
        except Exception as exc:
            await self._failed(row, token, exc)
            return
        await self._record(
            row.id,
            token,
            state="sent",
            sent_at=self._clock(),
            payload=None,
            lease_until=None,
            last_error=None,
        )
        log.info("outbox_delivered", message_id=row.id, kind=row.kind, attempt=row.attempts)

    async def _failed(self, row: Any, token: str, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, DeliveryError) else f"unexpected {type(exc).__name__}"
        final = isinstance(exc, PermanentDeliveryError) or row.attempts >= self._retry.max_attempts
        if final:
            await self._record(
                row.id, token, state="failed", payload=None, lease_until=None, last_error=reason
            )
        else:
            due: datetime = self._clock() + timedelta(seconds=self._retry.delay(row.attempts))
            await self._record(
                row.id, token, state="pending", next_attempt_at=due, lease_until=None, last_error=reason
            )
        log.warning(
            "outbox_delivery_failed",
            message_id=row.id,
            kind=row.kind,
            attempt=row.attempts,
            final=final,
            reason=reason,
        )

    async def _record(self, message_id: str, token: str, **values: Any) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id == message_id, outbox.c.claim_token == token, outbox.c.state == "sending")
                .values(**values)
            )


async def list_messages(
    engine: AsyncEngine, kek: KeyEncryptionKey, *, after: datetime | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The most recent outbox rows (oldest first), opened: what ``keyhall outbox`` prints."""
    query = select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(outbox.c.created_at > after)
    async with read_transaction(engine) as conn:
        rows = list(await conn.execute(query))
    result = []
    for row in reversed(rows):
        item: dict[str, Any] = {
            "id": row.id,
            "kind": row.kind,
            "state": row.state,
            "attempts": row.attempts,
            "createdAt": row.created_at,
            "lastError": row.last_error,
        }
        if row.payload:
            item.update(json.loads(kek.open(row.payload, seal_context(row.id))))
        result.append(item)
    return result
