"""Verification codes: issue one (throttled, stored as a keyed hash, queued for delivery) and consume it.

A code is 6 random digits, bound to pool + channel + address, valid ``code_ttl_s`` seconds, single-use,
and dead after ``code_max_attempts`` wrong tries (pool settings). The table keeps one row per
(pool, channel, address): a new send replaces the previous code.

Nothing in clear: the row's key is ``HMAC(k, pool|channel|address)`` and it stores
``HMAC(k, key|code)``, with ``k`` derived from the key-encryption key (the same on every host), so a copy
of the database gives neither the codes nor, without the key, a way to test guesses offline. The code is
compared with ``hmac.compare_digest``.

Races. Every consumption reads the row ``FOR UPDATE`` (PostgreSQL; SQLite's write transaction is
exclusive anyway) and then changes it with a conditional UPDATE (``used_at IS NULL AND failures <
max_failures``), so of two requests with one code exactly one wins, and concurrent wrong tries each
count once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.clock import Clock, system_clock
from keyhall.server.courier.message import Kind
from keyhall.server.courier.outbox import Outbox
from keyhall.server.courier.templates import EMAIL_CHANNELS, SMS_CHANNELS, render_code_message
from keyhall.server.crypto.kek import KeyEncryptionKey
from keyhall.server.errors import InvalidArgument, Throttled, VerificationCodeExpired, VerificationCodeWrong
from keyhall.server.ratelimit import RateLimiter
from keyhall.server.store.db import is_sqlite, read_transaction, write_transaction
from keyhall.server.store.tables import Pool, VerificationCode

__all__ = ["EMAIL_CHANNELS", "SMS_CHANNELS", "CodePolicy", "Codes"]

codes_table = cast(Table, VerificationCode.__table__)
pools = cast(Table, Pool.__table__)

CODE_DIGITS = 6
IP_WINDOW_S = 3600
_PURGE_EVERY = 200
_PURGE_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class CodePolicy:
    """A pool's code settings (columns of ``pools``)."""

    ttl_s: int = 300
    max_failures: int = 5
    resend_interval_s: int = 60
    sends_per_ip_hour: int = 30
    require_verified_email: bool = False


class _Outcome(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"


class Codes:
    """The code use cases of one server process."""

    def __init__(
        self,
        engine: AsyncEngine,
        kek: KeyEncryptionKey,
        limiter: RateLimiter,
        outbox: Outbox,
        clock: Clock = system_clock,
    ) -> None:
        self._engine = engine
        self._key = kek.mac_key("verification-codes")
        self._limiter = limiter
        self._outbox = outbox
        self._clock = clock
        self._sends = 0

    async def policy(self, pool_id: str) -> CodePolicy:
        async with read_transaction(self._engine) as conn:
            row = (await conn.execute(select(pools).where(pools.c.id == pool_id))).first()
        if row is None:
            return CodePolicy()
        return CodePolicy(
            ttl_s=row.code_ttl_s,
            max_failures=row.code_max_attempts,
            resend_interval_s=row.code_resend_interval_s,
            sends_per_ip_hour=row.code_sends_per_ip_hour,
            require_verified_email=row.require_verified_email,
        )

    async def send(
        self,
        pool_id: str,
        kind: Kind,
        channel: str,
        target: str,
        *,
        client_ip: str | None,
        lang: str,
    ) -> None:
        """Issue a new code for ``target`` (normalised email or E.164 phone) and queue its message.

        Returns once the code and the message are committed together; delivery follows in the worker.
        """
        allowed = EMAIL_CHANNELS if kind == "email" else SMS_CHANNELS
        if channel not in allowed:
            raise InvalidArgument(field="channel", reason=f"it must be one of {', '.join(allowed)}")
        policy = await self.policy(pool_id)
        client_key = f"code-send-ip:{pool_id}:{client_ip}" if client_ip else None
        if client_key is not None:
            # A client over its hourly cap must not also start the address's resend interval.
            capped = await self._limiter.peek(client_key, policy.sends_per_ip_hour, IP_WINDOW_S)
            if not capped.allowed:
                raise Throttled(retry_after=capped.retry_after_s)
        per_address = await self._limiter.hit(
            f"code-send:{pool_id}:{kind}:{channel}:{target}", 1, policy.resend_interval_s
        )
        if not per_address.allowed:
            raise Throttled(retry_after=per_address.retry_after_s)
        if client_key is not None:
            per_client = await self._limiter.hit(client_key, policy.sends_per_ip_hour, IP_WINDOW_S)
            if not per_client.allowed:
                raise Throttled(retry_after=per_client.retry_after_s)

        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        lookup = self._lookup(pool_id, channel, target)
        now = self._clock()
        values = {
            "lookup": lookup,
            "pool_id": pool_id,
            "channel": channel,
            "code_mac": self._code_mac(lookup, code),
            "failures": 0,
            "max_failures": policy.max_failures,
            "expires_at": now + timedelta(seconds=policy.ttl_s),
            "used_at": None,
            "created_at": now,
        }
        insert: Any = (sqlite.insert if is_sqlite(self._engine) else postgresql.insert)(codes_table)
        replace = insert.values(**values).on_conflict_do_update(
            index_elements=[codes_table.c.lookup],
            set_={key: value for key, value in values.items() if key not in ("lookup", "pool_id")},
        )
        message = render_code_message(kind, channel, target, code, policy.ttl_s, lang)
        self._sends += 1
        async with write_transaction(self._engine) as conn:
            await conn.execute(replace)
            await self._outbox.enqueue(conn, pool_id, message)
            if self._sends % _PURGE_EVERY == 0:
                await conn.execute(delete(codes_table).where(codes_table.c.expires_at < now - _PURGE_AFTER))
        self._outbox.wake()

    async def consume(
        self, pool_id: str, channel: str, target: str, code: str, *, field: str = "passCodePayload.passCode"
    ) -> None:
        """Use up the code; raise VerificationCodeWrong (400/2001) or VerificationCodeExpired (400/2300).

        A wrong try is counted even though this raises (its own transaction commits first).
        """
        async with write_transaction(self._engine) as conn:
            outcome, _ = await self._attempt(conn, pool_id, (channel,), target, code, use=True)
        _raise_for(outcome, field)

    async def check(
        self, pool_id: str, channels: Sequence[str], target: str, code: str, *, field: str
    ) -> str:
        """Check a code without using it; returns the channel it belongs to. Wrong tries are counted.

        For flows that must use the code only if something else succeeds: call this first, then
        :meth:`use` in the transaction that does that something.
        """
        async with write_transaction(self._engine) as conn:
            outcome, channel = await self._attempt(conn, pool_id, channels, target, code, use=False)
        _raise_for(outcome, field)
        assert channel is not None
        return channel

    async def use(
        self, conn: AsyncConnection, pool_id: str, channel: str, target: str, code: str, *, field: str
    ) -> None:
        """Use up the code inside the caller's write transaction (rolled back with it)."""
        outcome, _ = await self._attempt(conn, pool_id, (channel,), target, code, use=True, count=False)
        _raise_for(outcome, field)

    async def _attempt(
        self,
        conn: AsyncConnection,
        pool_id: str,
        channels: Sequence[str],
        target: str,
        code: str,
        *,
        use: bool,
        count: bool = True,
    ) -> tuple[_Outcome, str | None]:
        now = self._clock()
        lookups = {self._lookup(pool_id, channel, target): channel for channel in channels}
        query = select(codes_table).where(codes_table.c.lookup.in_(list(lookups)))
        if not is_sqlite(self._engine):
            query = query.with_for_update()
        rows = list(await conn.execute(query))
        live = [
            row
            for row in rows
            if row.used_at is None and row.failures < row.max_failures and _aware(row.expires_at) > now
        ]
        if not live:
            return (_Outcome.EXPIRED if rows else _Outcome.WRONG), None
        given = code.strip()
        for row in live:
            if hmac.compare_digest(row.code_mac, self._code_mac(row.lookup, given)):
                if use:
                    claimed = await conn.execute(self._still_live(row, now).values(used_at=now))
                    if claimed.rowcount != 1:
                        return _Outcome.EXPIRED, None
                return _Outcome.OK, lookups[row.lookup]
        if count:
            for row in live:
                await conn.execute(self._still_live(row, now).values(failures=codes_table.c.failures + 1))
        return _Outcome.WRONG, None

    @staticmethod
    def _still_live(row: Any, now: datetime) -> Any:
        c = codes_table.c
        return update(codes_table).where(
            c.lookup == row.lookup,
            c.code_mac == row.code_mac,
            c.used_at.is_(None),
            c.failures < c.max_failures,
            c.expires_at > now,
        )

    def _lookup(self, pool_id: str, channel: str, target: str) -> str:
        data = "\x00".join(("lookup", pool_id, channel, target)).encode()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def _code_mac(self, lookup: str, code: str) -> str:
        return hmac.new(self._key, f"code\x00{lookup}\x00{code}".encode(), hashlib.sha256).hexdigest()


def _raise_for(outcome: _Outcome, field: str) -> None:
    if outcome is _Outcome.WRONG:
        raise VerificationCodeWrong(field=field)
    if outcome is _Outcome.EXPIRED:
        raise VerificationCodeExpired(field=field)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
