"""The physical limit of sign-ups: how many argon2id hashes per second all the machine's cores can make.

One process per core (so that nothing is shared, not even the GIL), each hashing the same password at
the server's parameters, started together at a barrier; the rate is every hash made over the time from
the first start to the last finish. The processes are started once per benchmark run and reused, so a
measurement costs only its hashes and can be taken right before each load, with the server idle.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

from keyhall.server.crypto.passwords import Argon2Params

PASSWORD = "Blue-Harbor-7-Lantern"

_barrier: Barrier | None = None
_hasher: Any = None


@dataclass(frozen=True)
class Limit:
    """One measurement: ``processes`` hashing ``hashes`` in all, in ``wall_s``; CPU they used."""

    processes: int
    hashes: int
    wall_s: float
    cpu_s: float

    @property
    def hashes_per_s(self) -> float:
        return self.hashes / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_hash(self) -> float:
        return self.cpu_s * 1000 / self.hashes if self.hashes else 0.0


def merge_limits(readings: list[Limit]) -> Limit | None:
    """Several readings as one (hashes and times added up): the rate over all of them."""
    if not readings:
        return None
    return Limit(
        processes=readings[0].processes,
        hashes=sum(r.hashes for r in readings),
        wall_s=sum(r.wall_s for r in readings),
        cpu_s=sum(r.cpu_s for r in readings),
    )


class Argon2Limit:
    """A pool of ``processes`` hashing processes; :meth:`measure` takes one reading."""

    def __init__(self, processes: int, params: Argon2Params | None = None) -> None:
        self.processes = processes
        self.params = params or Argon2Params()
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes)
        self._pool = ProcessPoolExecutor(
            processes, mp_context=context, initializer=_start, initargs=(barrier, self.params)
        )
        self.measure(1)  # starts every process and warms its hasher up

    def measure(self, hashes_per_process: int) -> Limit:
        futures = [self._pool.submit(_hash_many, hashes_per_process) for _ in range(self.processes)]
        spans = [future.result(timeout=300) for future in futures]
        started = min(span[0] for span in spans)
        ended = max(span[1] for span in spans)
        return Limit(
            processes=self.processes,
            hashes=hashes_per_process * self.processes,
            wall_s=ended - started,
            cpu_s=sum(span[2] for span in spans),
        )

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def _start(barrier: Barrier, params: Argon2Params) -> None:
    import argon2

    global _barrier, _hasher
    _barrier = barrier
    _hasher = argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        type=argon2.Type.ID,
    )
    _hasher.hash(PASSWORD)


def _hash_many(count: int) -> tuple[float, float, float]:
    """Wait for every process, hash ``count`` times: (start, end) on the shared monotonic clock, CPU s."""
    assert _barrier is not None and _hasher is not None
    _barrier.wait(timeout=120)  # one task per process: each blocks here until all have theirs
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        _hasher.hash(PASSWORD)
    return started, time.perf_counter(), time.process_time() - cpu
