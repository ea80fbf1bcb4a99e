"""One bounded pool for CPU-heavy work (argon2, RSA/SM2 decryption), shared by everything in a process.

Work runs in threads (argon2-cffi, cryptography and SQLite release the GIL) behind a limiter of one slot
per core: a burst of requests queues here instead of stalling the event loop or oversubscribing cores.
The queue itself is bounded too (``max_waiting``): when that many jobs already wait for a slot, a new one
is refused at once with :class:`~keyhall.server.errors.ServerBusy` (a 503 envelope with ``Retry-After``)
rather than joining a backlog that would only answer after the client has given up.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar, TypeVarTuple

import anyio

from keyhall.server.errors import ServerBusy
from keyhall.server.metrics import CPU_QUEUE_REJECTIONS

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Starting guess of one job's duration (an argon2id hash at the default parameters), refined as jobs run.
_INITIAL_JOB_S = 0.05


class CpuPool:
    def __init__(self, concurrency: int, max_waiting: int | None = None) -> None:
        self._concurrency = max(1, concurrency)
        self._limiter = anyio.CapacityLimiter(self._concurrency)
        self._max_waiting = max_waiting
        self._in_pool = 0  # jobs running or waiting for a slot
        self._job_s = _INITIAL_JOB_S  # moving average of a job's duration, for Retry-After

    @property
    def waiting(self) -> int:
        """Jobs waiting for a slot now."""
        return max(0, self._in_pool - self._concurrency)

    async def run(self, function: Callable[[*Ts], T], *args: *Ts) -> T:
        async with self._admitted():
            return await anyio.to_thread.run_sync(self._timed, function, *args, limiter=self._limiter)

    async def run_async(self, function: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """``run`` for work that waits elsewhere (the host's hashing processes): the same slots and
        queue bound, but awaited on the event loop instead of a thread."""
        async with self._admitted(), self._limiter:
            started = time.perf_counter()
            try:
                return await function(*args)
            finally:
                self._observe(started)

    @asynccontextmanager
    async def _admitted(self) -> AsyncIterator[None]:
        """Count a job in the pool for its whole stay; refuse it at once when the queue is full."""
        if self._max_waiting is not None and self.waiting >= self._max_waiting:
            CPU_QUEUE_REJECTIONS.inc()
            raise ServerBusy(retry_after=self.retry_after())
        self._in_pool += 1
        try:
            yield
        finally:
            self._in_pool -= 1

    def retry_after(self) -> int:
        """Whole seconds until the jobs in the pool now should be done (at least 1)."""
        return max(1, math.ceil(self._in_pool / self._concurrency * self._job_s))

    def _timed(self, function: Callable[[*Ts], T], *args: *Ts) -> T:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self._observe(started)

    def _observe(self, started: float) -> None:
        # An exponential moving average; a float store is atomic enough for an estimate.
        self._job_s += (time.perf_counter() - started - self._job_s) * 0.2
