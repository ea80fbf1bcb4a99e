"""One bounded pool for CPU-heavy work (argon2, RSA/SM2 decryption), shared by everything in a process.

Work runs in threads (argon2-cffi, cryptography and SQLite release the GIL) behind a limiter of one slot
per core: a burst of requests queues here instead of stalling the event loop or oversubscribing cores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class CpuPool:
    def __init__(self, concurrency: int) -> None:
        self._limiter = anyio.CapacityLimiter(max(1, concurrency))

    async def run(self, function: Callable[[*Ts], T], *args: *Ts) -> T:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
