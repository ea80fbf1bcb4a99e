"""The objects one server process shares between requests, built once at start-up."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.clock import Clock, system_clock
from keyhall.server.courier.outbox import Outbox, RetryPolicy
from keyhall.server.courier.transports import transports_from
from keyhall.server.crypto import hash_pool
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.crypto.kek import KeyEncryptionKey
from keyhall.server.crypto.passwords import Argon2Params, PasswordHasher
from keyhall.server.crypto.transport import PasswordTransport
from keyhall.server.flows.account import Account
from keyhall.server.flows.codes import Codes
from keyhall.server.flows.registration import Registration
from keyhall.server.flows.signin import SignIn
from keyhall.server.flows.transport_keys import TransportKeyStore
from keyhall.server.identity.app import App
from keyhall.server.identity.password_policy import common_passwords
from keyhall.server.ratelimit import DatabaseRateLimiter, RateLimiter
from keyhall.server.ratelimit_redis import RedisRateLimiter
from keyhall.server.settings import Settings
from keyhall.server.store import repository
from keyhall.server.store.db import create_engine, read_transaction
from keyhall.server.store.user_cache import UserCache, open_user_cache
from keyhall.server.tokens.issuer import Tokens
from keyhall.server.tokens.keys import SigningKeys

log = structlog.get_logger("keyhall.server")


class AppDirectory:
    """Looks applications (and their pool's rules) up by id, keeping each one found for ``ttl_s``.

    Every /api/v3 request names its app, and the lookup was a transaction of its own on each one (a
    third of the event loop's work on a get-profile). Another process or host may change an app or its
    pool (``keyhall app create``, an operator's UPDATE, a rotated app secret): this process sees the
    change within ``ttl_s`` seconds (``KEYHALL_APP_CACHE_TTL_S``; 0 reads the database every time).
    Unknown ids are not kept, so made-up ids cannot fill the memory; known ones are few.
    """

    _MAX_ENTRIES = 4096  # a bound for a deployment with very many apps: past it, start afresh

    def __init__(
        self, engine: AsyncEngine, ttl_s: float = 0.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._ttl_s = ttl_s
        self._now = now
        self._cache: dict[str, tuple[float, App]] = {}

    async def get(self, app_id: str) -> App | None:
        cached = self._cache.get(app_id)
        if cached is not None and cached[0] > self._now():
            return cached[1]
        async with read_transaction(self._engine) as conn:
            row = await repository.get_app(conn, app_id)
        if row is None:
            self._cache.pop(app_id, None)
            return None
        app = App.from_rows(row.app, row.pool)
        if self._ttl_s > 0:
            if len(self._cache) >= self._MAX_ENTRIES:
                self._cache.clear()
            self._cache[app_id] = (self._now() + self._ttl_s, app)
        return app


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    kek: KeyEncryptionKey
    hasher: PasswordHasher
    transport: PasswordTransport
    apps: AppDirectory
    limiter: RateLimiter
    registration: Registration
    outbox: Outbox
    codes: Codes
    signing_keys: SigningKeys
    tokens: Tokens
    signin: SignIn
    account: Account
    users: UserCache | None = None

    @classmethod
    async def start(cls, settings: Settings, clock: Clock = system_clock) -> Services:
        kek = settings.key_encryption_key()
        engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, timeout_s=settings.db_timeout_s
        )
        cpu = CpuPool(settings.hash_concurrency, max_waiting=settings.hash_queue_max)
        # The host's hashing processes, when `keyhall serve` started them (crypto/hash_pool.py).
        hasher = PasswordHasher(cpu, os.environ.get(hash_pool.SOCKET_ENV) or None)
        key_store = TransportKeyStore(engine, kek, clock, cpu)
        transport = PasswordTransport(key_store.load, cpu, clock, settings.transport_key_refresh_s)
        await transport.start()  # a wrong secret key fails here, at start-up
        common_passwords()  # load the list now rather than in the first sign-up
        await hasher.prepare(Argon2Params())  # the unknown-account dummy hash at the default parameters
        limiter: RateLimiter
        if settings.redis_url:  # shared counters in Redis, failing closed when it is away
            limiter = RedisRateLimiter(
                settings.redis_url, key_prefix=settings.redis_key_prefix, timeout_s=settings.redis_timeout_s
            )
        else:
            limiter = DatabaseRateLimiter(engine, clock)
        outbox = Outbox(
            engine,
            kek,
            transports_from(settings),
            RetryPolicy(
                max_attempts=settings.outbox_max_attempts,
                base_s=settings.outbox_retry_base_s,
                cap_s=settings.outbox_retry_cap_s,
                lease_s=settings.outbox_lease_s,
                poll_s=settings.outbox_poll_s,
            ),
            clock,
        )
        codes = Codes(engine, kek, limiter, outbox, clock)
        signing_keys = SigningKeys(engine, kek, clock, reload_s=settings.signing_key_refresh_s)
        await signing_keys.start()
        users = open_user_cache(
            settings.database_url, settings.user_cache_size, settings.user_cache_max_age_s
        )
        tokens = Tokens(engine, signing_keys, settings.app_host + "/oidc", clock, users)
        signin = SignIn(engine, hasher, transport, limiter, tokens, clock, codes=codes)
        outbox.start()
        if outbox.dev_kinds:
            log.info("dev_outbox_in_use", kinds=outbox.dev_kinds, show_with="keyhall outbox --follow")
        return cls(
            settings=settings,
            engine=engine,
            kek=kek,
            hasher=hasher,
            transport=transport,
            apps=AppDirectory(engine, settings.app_cache_ttl_s),
            limiter=limiter,
            registration=Registration(engine, hasher, transport, clock, codes=codes),
            outbox=outbox,
            codes=codes,
            signing_keys=signing_keys,
            tokens=tokens,
            signin=signin,
            account=Account(engine, hasher, transport, tokens, signin, clock, users),
            users=users,
        )

    async def stop(self) -> None:
        await self.outbox.stop()
        if self.users is not None:
            await self.users.close()
        if isinstance(self.limiter, RedisRateLimiter):
            await self.limiter.close()
        await self.engine.dispose()
