"""One set of argon2 processes per host, shared by every worker of ``keyhall serve``.

Why: with N workers each hashing in its own threads (one per core, so that one busy worker can use the
whole machine), up to N x cores hashes ran at once on the cores, and an argon2id hash at 19 MiB then
cost 20 to 30% more CPU than one per core at a time in a process of its own (docs/profiling.md: about
17 ms alone, 23 in the server at 64 clients). Capping each worker at cores / N threads fixes the
oversubscription but halves the machine when the connections are not spread evenly over the workers,
which a shared listening socket does not do. A pool shared by the workers has neither problem: exactly
one hashing process per core, each taking the next job whatever worker sent it.

How: ``keyhall serve`` starts the pool before its workers (:class:`HashPool`): one listening Unix
socket in a private directory (mode 0700), and ``processes`` processes blocked in ``accept()`` on it.
A job is one connection: a worker connects, sends the job, reads the answer. Only
an idle process accepts, so the kernel's accept queue is the shared job queue and hands the next job to
whichever process is free (pull, not push: no dispatcher, no per-worker share). Workers find the socket
through ``KEYHALL_HASH_POOL_SOCKET`` and wait for the answer on their event loop; each keeps its own
bounded queue in front of it (``CpuPool``, ``KEYHALL_HASH_QUEUE_MAX``), so overload is still refused
with a 503 per worker.

A job the pool cannot take (its socket gone, a process killed mid-job) is hashed in a thread of the
worker instead, with a warning: slower, never lost. The processes ignore SIGINT and SIGTERM (a signal
to the whole process group must not end them before the workers have finished their requests), and
leave by themselves when the ``serve`` process that started them is gone; ``serve`` stops them after
its workers.

Frames are a 4-byte length and JSON, on a socket only this user can reach; no pickle crosses it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import structlog

log = structlog.get_logger("keyhall.server")

SOCKET_ENV = "KEYHALL_HASH_POOL_SOCKET"
_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 * 1024  # a job carries a password (at most a few KiB) and a hash
_ORPHAN_CHECK_S = 1.0
_JOB_TIMEOUT_S = 120.0  # a job waits for a free process at most this long: far past any request timeout


class HashPoolUnavailable(Exception):
    """The pool did not answer the job: hash it here instead."""


def _frame(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(data)) + data


def _body_size(header: bytes) -> int:
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return int(size)


def _message(body: bytes) -> dict[str, Any]:
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("frame is not an object")
    return message


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(_frame(message))


def read_frame(sock: socket.socket) -> dict[str, Any]:
    return _message(_read_exactly(sock, _body_size(_read_exactly(sock, _HEADER.size))))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the worker's side -----------------------------------------------------------------------------------


async def call_async(path: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in the pool at ``path``: the job waits on a socket, not in a thread."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(_JOB_TIMEOUT_S):
            await loop.sock_connect(sock, path)
            await loop.sock_sendall(sock, _frame(job))
            size = _body_size(await _receive(loop, sock, _HEADER.size))
            answer = _message(await _receive(loop, sock, size))
    except (OSError, ValueError) as error:  # TimeoutError is an OSError
        raise HashPoolUnavailable(type(error).__name__) from None
    finally:
        sock.close()
    if "error" in answer:
        raise HashPoolUnavailable(str(answer["error"]))
    return answer


async def _receive(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = await loop.sock_recv(sock, left)
        if not chunk:
            raise ConnectionError("the pool closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the pool's side -------------------------------------------------------------------------------------


def _serve_jobs(listener: socket.socket, parent: int, folder: str | None = None) -> None:
    """A pool process: take one job at a time from the shared socket until ``parent`` is gone (then
    remove the socket's ``folder``, which a killed ``serve`` could not)."""
    from argon2 import PasswordHasher, Type
    from argon2.exceptions import InvalidHashError, VerificationError

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    hashers: dict[tuple[int, int, int], PasswordHasher] = {}
    listener.settimeout(_ORPHAN_CHECK_S)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # serve is gone (even by kill -9): so are we
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                return
            continue
        except OSError:
            return  # the listener was closed
        with conn:
            conn.settimeout(10.0)  # a worker that connects and sends nothing must not hold this process
            try:
                job = read_frame(conn)
                params = (int(job["t"]), int(job["m"]), int(job["p"]))
                hasher = hashers.get(params)
                if hasher is None:
                    hasher = hashers[params] = PasswordHasher(
                        time_cost=params[0], memory_cost=params[1], parallelism=params[2], type=Type.ID
                    )
                started = time.perf_counter()
                answer: dict[str, Any]
                if job["op"] == "hash":
                    answer = {"hash": hasher.hash(str(job["password"]))}
                else:
                    try:
                        answer = {"matches": hasher.verify(str(job["hash"]), str(job["password"]))}
                    except (VerificationError, InvalidHashError):
                        answer = {"matches": False}
                answer["seconds"] = time.perf_counter() - started
                send_frame(conn, answer)
            except Exception as error:  # the job's own fault: tell the worker, keep serving
                try:
                    send_frame(conn, {"error": type(error).__name__})
                except OSError:
                    pass  # the worker is gone


class HashPool:
    """The pool of ``processes`` hashing processes that ``keyhall serve`` starts before its workers.

    Each is ``python -m keyhall.server.crypto.hash_pool`` (so ``ps`` says what it is) and inherits the
    listening socket.
    """

    def __init__(self, processes: int) -> None:
        self._folder = tempfile.mkdtemp(prefix="keyhall-hash-")  # mode 0700: only this user connects
        self.path = os.path.join(self._folder, "pool.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1024)
        self._processes = [self._start_one() for _ in range(max(1, processes))]
        self._stopping = threading.Event()
        self._keeper = threading.Thread(target=self._keep, name="keyhall-hash-pool", daemon=True)
        self._keeper.start()

    def _start_one(self) -> subprocess.Popen[bytes]:
        fd = self._listener.fileno()
        command = [sys.executable, "-m", __name__, "--fd", str(fd), "--parent", str(os.getpid())]
        command += ["--folder", self._folder]
        return subprocess.Popen(command, pass_fds=(fd,), stdin=subprocess.DEVNULL)  # noqa: S603 (our own argv)

    def _keep(self) -> None:
        """Replace a process that died (killed by hand, out of memory) while the pool runs."""
        while not self._stopping.wait(1.0):
            for index, process in enumerate(self._processes):
                if process.poll() is not None and not self._stopping.is_set():
                    log.warning("hash_pool_process_replaced", exit_status=process.returncode)
                    self._processes[index] = self._start_one()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def stop(self) -> None:
        self._stopping.set()
        self._keeper.join(timeout=5)
        for process in self._processes:
            process.kill()
        for process in self._processes:
            process.wait(timeout=5)
        self._listener.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description="A Keyhall hashing process")
    parser.add_argument("--fd", type=int, required=True, help="the pool's listening socket, inherited")
    parser.add_argument("--parent", type=int, required=True, help="leave when this process is gone")
    parser.add_argument("--folder", help="the socket's folder, removed when leaving for that reason")
    args = parser.parse_args(argv)
    _serve_jobs(socket.socket(fileno=args.fd), args.parent, args.folder)


if __name__ == "__main__":
    main()
