"""Password hashing with argon2id, off the event loop and bounded to the core count.

Hashing is deliberately slow (about 20 ms and 19 MiB each at the OWASP defaults), so it runs in the
process's CpuPool: a flood of sign-ups queues instead of starving the event loop or allocating
``N x 19 MiB`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher as _Argon2
from argon2 import Type

from keyhall.server.crypto.cpu import CpuPool

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
DEFAULT_TIME_COST = 2
DEFAULT_MEMORY_KIB = 19456
DEFAULT_PARALLELISM = 1


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = DEFAULT_TIME_COST
    memory_kib: int = DEFAULT_MEMORY_KIB
    parallelism: int = DEFAULT_PARALLELISM


class PasswordHasher:
    """Hashes passwords with each pool's parameters; one instance per process, shared by every pool."""

    def __init__(self, cpu: CpuPool) -> None:
        self._cpu = cpu
        self._hashers: dict[Argon2Params, _Argon2] = {}

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
        return await self._cpu.run(hasher.hash, password)
