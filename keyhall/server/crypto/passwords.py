"""Password hashing with argon2id, off the event loop and bounded to the core count.

Hashing is deliberately slow (about 20 ms and 19 MiB each at the OWASP defaults), so it runs in the
process's CpuPool: a flood of sign-ups queues instead of starving the event loop or allocating
``N x 19 MiB`` at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import anyio
import structlog
from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError

from keyhall.server.crypto import hash_pool
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.metrics import HASH_SECONDS, time_hash

log = structlog.get_logger("keyhall.server")

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
DEFAULT_TIME_COST = 2
DEFAULT_MEMORY_KIB = 19456
DEFAULT_PARALLELISM = 1


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a password: ``matches``, and whether the stored hash should be redone
    with the pool's current parameters (``needs_rehash``, only ever True when it matches)."""

    matches: bool
    needs_rehash: bool = False


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = DEFAULT_TIME_COST
    memory_kib: int = DEFAULT_MEMORY_KIB
    parallelism: int = DEFAULT_PARALLELISM


class PasswordHasher:
    """Hashes passwords with each pool's parameters; one instance per process, shared by every pool."""

    def __init__(self, cpu: CpuPool, pool_socket: str | None = None) -> None:
        self._cpu = cpu
        self._pool = pool_socket  # the host's hashing processes (crypto/hash_pool.py); None: our threads
        self._pool_warned_at = 0.0
        self._hashers: dict[Argon2Params, _Argon2] = {}
        self._dummies: dict[Argon2Params, str] = {}
        self._dummy_lock = asyncio.Lock()

    def _hasher(self, params: Argon2Params) -> _Argon2:
        hasher = self._hashers.get(params)
        if hasher is None:
            hasher = _Argon2(
                time_cost=params.time_cost,
                memory_cost=params.memory_kib,
                parallelism=params.parallelism,
                type=Type.ID,
            )
            self._hashers[params] = hasher
        return hasher

    async def hash(self, password: str, params: Argon2Params) -> str:
        hasher = self._hasher(params)
        if self._pool is not None:
            return await self._cpu.run_async(self._pool_hash, self._pool, hasher, params, password)
        return await self._cpu.run(_timed_hash, hasher, password)

    async def verify(self, password_hash: str, password: str, params: Argon2Params) -> Verification:
        """Check ``password`` against ``password_hash``; a malformed hash is a mismatch, not an error.

        ``needs_rehash`` says the hash was made with parameters other than ``params`` (the pool's now).
        """
        hasher = self._hasher(params)
        if self._pool is not None:
            return await self._cpu.run_async(
                self._pool_verify, self._pool, hasher, params, password_hash, password
            )
        return await self._cpu.run(_verify, hasher, password_hash, password)

    async def verify_unknown(self, password: str, params: Argon2Params) -> Verification:
        """Spend the same work as :meth:`verify` for an account that does not exist, and fail.

        The dummy hash is made once per parameter set, at those parameters, so an unknown account takes
        as long as a wrong password for a real one.
        """
        dummy = await self._dummy(params)
        await self.verify(dummy, password, params)
        return Verification(matches=False)

    async def prepare(self, params: Argon2Params) -> None:
        """Make the dummy hash for ``params`` now (at start-up, for the default parameters), so that the
        first unknown account a process sees is not the one that pays for it: that request would take
        a hash and a verification, twice a wrong password's time."""
        await self._dummy(params)

    async def _dummy(self, params: Argon2Params) -> str:
        dummy = self._dummies.get(params)
        if dummy is None:
            async with self._dummy_lock:
                dummy = self._dummies.get(params)
                if dummy is None:
                    dummy = await self.hash("keyhall dummy password, never matches", params)
                    self._dummies[params] = dummy
        return dummy

    # In a CpuPool slot, on the event loop: the job goes to the pool's socket. When the pool cannot take
    # it, this slot's work is done in a thread here instead.

    async def _pool_hash(self, pool: str, hasher: _Argon2, params: Argon2Params, password: str) -> str:
        try:
            answer = await hash_pool.call_async(pool, {"op": "hash", **_wire(params), "password": password})
        except hash_pool.HashPoolUnavailable as error:
            self._pool_failed(error)
            return await anyio.to_thread.run_sync(_timed_hash, hasher, password)
        HASH_SECONDS.observe(float(answer["seconds"]))  # the hash itself, not the wait for a process
        return str(answer["hash"])

    async def _pool_verify(
        self, pool: str, hasher: _Argon2, params: Argon2Params, password_hash: str, password: str
    ) -> Verification:
        job = {"op": "verify", **_wire(params), "hash": password_hash, "password": password}
        try:
            answer = await hash_pool.call_async(pool, job)
        except hash_pool.HashPoolUnavailable as error:
            self._pool_failed(error)
            return await anyio.to_thread.run_sync(_verify, hasher, password_hash, password)
        if not answer["matches"]:
            return Verification(matches=False)
        return Verification(matches=True, needs_rehash=hasher.check_needs_rehash(password_hash))

    def _pool_failed(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._pool_warned_at >= 60:  # one line a minute, however many jobs fall back
            self._pool_warned_at = now
            log.warning("hash_pool_unavailable", error=str(error), fallback="this worker's threads")


def _wire(params: Argon2Params) -> dict[str, int]:
    return {"t": params.time_cost, "m": params.memory_kib, "p": params.parallelism}


def _verify(hasher: _Argon2, password_hash: str, password: str) -> Verification:
    try:
        hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        # VerifyMismatchError is a VerificationError; InvalidHashError: not an argon2 hash at all.
        return Verification(matches=False)
    return Verification(matches=True, needs_rehash=hasher.check_needs_rehash(password_hash))


def _timed_hash(hasher: _Argon2, password: str) -> str:
    with time_hash():  # the keyhall_password_hash_seconds histogram: hashing only, not the queue
        return hasher.hash(password)
