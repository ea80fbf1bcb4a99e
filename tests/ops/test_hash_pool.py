"""The host's hashing processes (keyhall/server/crypto/hash_pool.py): jobs from any thread go to whichever
process is free; a job the pool cannot take is hashed in the caller's thread; a process that dies is
replaced; the processes leave when the process that started them is killed; `keyhall serve` runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from argon2 import PasswordHasher as Argon2

from keyhall.server.crypto import hash_pool
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.crypto.hash_pool import HashPool, HashPoolUnavailable
from keyhall.server.crypto.passwords import Argon2Params, PasswordHasher
from tests.support.servers import RunningServer

LIGHT = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
JOB = {"op": "hash", "t": 1, "m": 1024, "p": 1}
BOUND_S = 10.0  # for processes to start, die or be replaced: a bound, not a measurement


@pytest.fixture
def pool() -> Iterator[HashPool]:
    started = HashPool(2)
    try:
        yield started
    finally:
        started.stop()


def call(path: str, job: dict[str, object]) -> dict[str, object]:
    return asyncio.run(hash_pool.call_async(path, job))


def test_jobs_sent_at_once_are_hashed_and_verified_by_the_pool(pool: HashPool) -> None:
    async def many() -> list[dict[str, object]]:
        jobs = [hash_pool.call_async(pool.path, {**JOB, "password": f"pw-{i}"}) for i in range(16)]
        return list(await asyncio.gather(*jobs))

    answers: list[dict[str, Any]] = asyncio.run(many())
    for index, answer in enumerate(answers):
        assert Argon2().verify(answer["hash"], f"pw-{index}")  # a real argon2id hash of that password
        assert "$m=1024,t=1,p=1$" in answer["hash"] and answer["seconds"] > 0
    good = {**JOB, "op": "verify", "hash": answers[0]["hash"]}
    assert call(pool.path, {**good, "password": "pw-0"})["matches"] is True
    assert call(pool.path, {**good, "password": "pw-1"})["matches"] is False
    assert call(pool.path, {**good, "hash": "not a hash", "password": "x"})["matches"] is False
    with pytest.raises(HashPoolUnavailable, match="KeyError"):  # a job without parameters
        call(pool.path, {"op": "hash", "password": "x"})
    assert call(pool.path, {**JOB, "password": "still serving"})["hash"]


def test_the_password_hasher_uses_the_pool_and_falls_back_to_its_threads(pool: HashPool) -> None:
    async def scenario() -> None:
        hasher = PasswordHasher(CpuPool(2), pool.path)
        stored = await hasher.hash("Correct-Horse-7", LIGHT)
        assert (await hasher.verify(stored, "Correct-Horse-7", LIGHT)).matches
        assert not (await hasher.verify(stored, "wrong", LIGHT)).matches
        assert (await hasher.verify(stored, "Correct-Horse-7", Argon2Params())).needs_rehash

        pool.stop()  # gone: the same calls still work, in this process's threads
        again = await hasher.hash("Correct-Horse-7", LIGHT)
        assert (await hasher.verify(again, "Correct-Horse-7", LIGHT)).matches
        assert not (await hasher.verify(stored, "wrong", LIGHT)).matches

    asyncio.run(scenario())


def _wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_process_that_dies_is_replaced(pool: HashPool) -> None:
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    _wait_until(lambda: victim not in pool.pids and len(pool.pids) == 2, "the dead process was not replaced")
    assert all(_alive(pid) for pid in pool.pids)
    with ThreadPoolExecutor(4) as threads:  # four event loops at once
        assert all(threads.map(lambda i: call(pool.path, {**JOB, "password": str(i)}), range(4)))


def test_the_processes_leave_when_their_parent_is_killed() -> None:
    script = (
        "import sys, time\n"
        "from keyhall.server.crypto.hash_pool import HashPool\n"
        "pool = HashPool(2)\n"
        "print(pool.path, ' '.join(map(str, pool.pids)), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        path, *pids = parent.stdout.readline().split()
        children = [int(pid) for pid in pids]
        assert len(children) == 2 and all(_alive(pid) for pid in children)
        assert os.path.exists(path)
    finally:
        parent.kill()  # kill -9: no chance to stop them
        parent.wait()
    _wait_until(lambda: not any(_alive(pid) for pid in children), "orphaned hashing processes stayed")
    assert not os.path.exists(os.path.dirname(path))  # nor does the socket's private folder


def test_keyhall_serve_runs_one_hashing_process_per_core(server: RunningServer) -> None:
    children: list[bytes] = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            if parent == server.process.pid:
                with open(f"/proc/{entry}/cmdline", "rb") as command:
                    children.append(command.read())
        except (OSError, ValueError):
            continue
    hashing = [command for command in children if b"keyhall.server.crypto.hash_pool" in command]
    assert len(hashing) == (os.cpu_count() or 1), children
