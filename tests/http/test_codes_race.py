"""Races on one code, in-process against the session servers' databases: exactly one use wins."""

from __future__ import annotations

import asyncio

from keyhall.server.courier.outbox import Outbox, list_messages
from keyhall.server.errors import VerificationCodeExpired, VerificationCodeWrong
from keyhall.server.flows.codes import Codes
from keyhall.server.ratelimit import DatabaseRateLimiter
from keyhall.server.store.db import create_engine
from tests.support.codes import code_in, kek_for_tests
from tests.support.servers import RunningServer


async def test_racing_uses_of_one_code_let_exactly_one_win(server: RunningServer, unique: str) -> None:
    engine = create_engine(server.database_url)
    kek = kek_for_tests()
    codes = Codes(engine, kek, DatabaseRateLimiter(engine), Outbox(engine, kek, {"email": None, "sms": None}))
    email = f"race.{unique}@example.com"
    try:
        await codes.send(server.pool_id, "email", "CHANNEL_LOGIN", email, client_ip=None, lang="en-US")
        sent = [m for m in await list_messages(engine, kek, limit=1000) if m.get("to") == email]
        code = code_in(sent[-1]["text"])
        results = await asyncio.gather(
            *(codes.consume(server.pool_id, "CHANNEL_LOGIN", email, code) for _ in range(12)),
            return_exceptions=True,
        )
        assert results.count(None) == 1, results
        assert all(isinstance(r, VerificationCodeExpired) for r in results if r is not None), results
        try:
            await codes.consume(server.pool_id, "CHANNEL_REGISTER", email, code)
        except VerificationCodeWrong:
            pass
        else:
            raise AssertionError("a CHANNEL_LOGIN code was accepted for CHANNEL_REGISTER")
    finally:
        await engine.dispose()
