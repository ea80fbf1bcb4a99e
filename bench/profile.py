"""``python -m bench.profile [--db sqlite|postgres] [--scenario signup|profile]``: where a server's CPU goes.

Starts a fresh database and ``keyhall serve --workers N`` (the servers the tests use), warms it up, then
drives a load at a fixed concurrency while ``py-spy record`` samples every worker (``--subprocesses``,
idle threads left out, so the samples are CPU). It prints:

- the load's figures: answers, req/s, and the server's CPU time per request (from ``/proc``, as the
  benchmarks measure it; use ``--no-profile`` for figures without the sampler's own cost on the cores);
- the top frames by own time (the leaf of a sample) and by total time (anywhere in a sample's stack);
- own time by area (argon2, SQLAlchemy, the driver, pydantic, JSON, structlog, ...), grouped by file.

The speedscope file is kept (``--output``) for a closer look in any speedscope viewer. Scenarios:
``signup`` posts distinct email + password sign-ups; ``profile`` signs one user in and reads
``GET /api/v3/get-profile`` with its access token. ``--repeat K`` runs K loads on the one server and
prints the CPU per request of each, for before/after comparisons on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench.cpu import TICKS, CpuUse, CpuWatch, cmdline, descendants
from bench.load import label_of
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    start_server,
)

PASSWORD = "Blue-Harbor-7-Lantern"
PROFILE_PATH = "/api/v3/get-profile"
SIGNUP_PATH = "/api/v3/signup"

# Own time is grouped by the first matching marker in a frame's file name (py-spy shortens file names to
# the package part, e.g. "sqlalchemy/engine/base.py").
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("argon2 (hash)", ("argon2/",)),
    ("keyhall", ("keyhall/",)),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("aiosqlite / sqlite3", ("aiosqlite/", "sqlite3/")),
    ("asyncpg", ("asyncpg/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("JSON", ("json/",)),
    ("structlog / logging", ("structlog/", "logging/")),
    ("prometheus-client", ("prometheus_client/",)),
    ("email-validator / idna", ("email_validator/", "idna/")),
    ("FastAPI / Starlette", ("fastapi/", "starlette/")),
    ("uvicorn / h11 / httptools", ("uvicorn/", "h11/", "httptools/")),
    ("PyJWT / cryptography", ("jwt/", "cryptography/")),
    ("anyio / threads", ("anyio/", "threading.py", "concurrent/")),
    ("asyncio / uvloop", ("asyncio/", "uvloop/")),
)


@dataclass
class Load:
    wall_s: float
    answers: Counter[str] = field(default_factory=Counter)
    client_cpu_s: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.answers.values())


@dataclass
class FrameStats:
    """Seconds of sampled CPU: all of them, and per frame or area."""

    samples: float = 0.0
    own: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    areas: Counter[str] = field(default_factory=Counter)


# --- the server --------------------------------------------------------------------------------------


@contextmanager
def serving(db: str, workers: int, workdir: Path, env: dict[str, str]) -> Iterator[RunningServer]:
    """A fresh database and ``keyhall serve``; both gone when the block ends."""
    log_path = workdir / "server.log"
    url = f"sqlite:///{workdir / 'keyhall.db'}" if db == "sqlite" else create_postgres_database()
    try:
        server = start_server(db, url, log_path, workers=workers, env=env)
        children = descendants(server.process.pid) - {server.process.pid}
        try:
            yield server
        finally:
            server.stop()
            for pid in children:  # workers of a supervisor that had to be killed: ours, by pid
                if b"python" in cmdline(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
    finally:
        if db == "postgres":
            drop_postgres_database(url)


# --- the load ----------------------------------------------------------------------------------------


def signup_body(email: str) -> dict[str, Any]:
    return {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": PASSWORD}}


async def drive(
    client: httpx.AsyncClient, requests: list[dict[str, Any] | None], concurrency: int, path: str
) -> Load:
    """Send each request (a JSON body to POST, or None for a GET) with ``concurrency`` in flight."""
    queue = iter(requests)
    answers: Counter[str] = Counter()

    async def worker() -> None:
        for body in queue:
            try:
                if body is None:
                    response = await client.get(path)
                else:
                    response = await client.post(path, json=body)
                answers[label_of(response)] += 1
            except httpx.HTTPError as exc:
                answers[f"client error: {type(exc).__name__}"] += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Load(time.perf_counter() - started, answers, time.process_time() - cpu)


async def access_token(server: RunningServer) -> str:
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}, timeout=30
    ) as client:
        email = f"reader-{uuid.uuid4().hex[:8]}@example.com"
        answer = (await client.post(SIGNUP_PATH, json=signup_body(email))).json()
        if answer.get("statusCode") != 200:
            raise RuntimeError(f"sign-up failed: {answer}")
        answer = (
            await client.post(
                "/api/v3/signin",
                json={"connection": "PASSWORD", "passwordPayload": {"email": email, "password": PASSWORD}},
            )
        ).json()
        if answer.get("statusCode") != 200:
            raise RuntimeError(f"sign-in failed: {answer}")
        return str(answer["data"]["access_token"])


def planned(scenario: str, count: int, tag: str) -> list[dict[str, Any] | None]:
    if scenario == "signup":
        return [signup_body(f"user-{i}.{tag}@example.com") for i in range(count)]
    return [None] * count


class ThreadWatch:
    """CPU of the workers' main threads (their event loops) against their other threads (RSA/SM2 in
    the CPU pool, aiosqlite's connection threads, the SQLite writer) and the hashing processes
    (keyhall/server/crypto/hash_pool.py), from ``/proc/PID/task``."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.before = self._snapshot()

    def _snapshot(self) -> dict[tuple[int, int], int]:
        ticks: dict[tuple[int, int], int] = {}
        for pid in descendants(self.root) - {self.root}:
            if b"keyhall.server.crypto.hash_pool" in cmdline(pid):
                pid_key = -pid  # a hashing process: counted apart from the workers
            else:
                pid_key = pid
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8", errors="replace") as file:
                        fields = file.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks[(pid_key, int(tid))] = int(fields[11]) + int(fields[12])
        return ticks

    def describe(self, requests: int) -> str:
        after = self._snapshot()
        loop = other = hashing = 0
        for key, value in after.items():
            spent = value - self.before.get(key, 0)
            if key[0] < 0:
                hashing += spent
            elif key[0] == key[1]:
                loop += spent
            else:
                other += spent
        per = 1000 / TICKS / max(1, requests)
        return (
            f"  of which event loops (workers' main threads) {loop * per:.2f} ms per request, "
            f"other threads {other * per:.2f} ms per request, hashing processes {hashing * per:.2f} ms "
            "per request (threads that ended during the run not counted)"
        )


# --- py-spy ------------------------------------------------------------------------------------------


class Sampler:
    """``py-spy record`` of a process tree into a speedscope file, stopped with SIGINT."""

    def __init__(self, pid: int, output: Path, rate: int, extra: list[str]) -> None:
        self.output = output
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if py_spy is None:
            raise SystemExit("py-spy is missing: .venv/bin/pip install -e '.[bench]' (or use --no-profile)")
        command = [py_spy, "record", "--pid", str(pid), "--subprocesses", *extra]
        command += ["--format", "speedscope", "--nolineno", "--rate", str(rate), "--output", str(output)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach to every worker before the load starts
        if self.process.poll() is not None:
            raise RuntimeError(
                f"py-spy exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
            )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def frame_stats(speedscope: Path) -> FrameStats:
    """Own and total samples per frame (``function (file)``), and own samples per area."""
    document = json.loads(speedscope.read_text(encoding="utf-8"))
    frames = document["shared"]["frames"]
    names = [f"{f['name']} ({_short(str(f.get('file') or '?'))})" for f in frames]
    areas = [_area(str(f.get("file") or "")) for f in frames]
    stats = FrameStats()
    for profile in document["profiles"]:
        weights = profile.get("weights") or [1] * len(profile["samples"])
        for stack, weight in zip(profile["samples"], weights, strict=True):
            if not stack:
                continue
            weight = float(weight)  # py-spy weighs each sample by its interval, in seconds
            stats.samples += weight
            stats.own[names[stack[-1]]] += weight
            stats.areas[areas[stack[-1]]] += weight
            for name in {names[index] for index in stack}:
                stats.total[name] += weight
    return stats


def _short(file: str) -> str:
    """A file name from its package on (``sqlalchemy/engine/base.py``), or its base name."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1]
    if "/lib/python3" in file:
        tail = file.split("/lib/python3", 1)[1]
        return tail.split("/", 1)[1] if "/" in tail else tail
    if "/keyhall/" in file:  # this project, wherever it is checked out
        return "keyhall/" + file.rsplit("/keyhall/", 1)[1]
    return file


def _area(file: str) -> str:
    normalised = file.replace("\\", "/")
    for area, markers in AREAS:
        if any(marker in normalised for marker in markers):
            return area
    return "other (stdlib, C extensions)"


# --- the report --------------------------------------------------------------------------------------


def describe(load: Load, cpu: CpuUse | None, label: str) -> str:
    rate = load.sent / load.wall_s if load.wall_s else 0.0
    lines = [
        f"{label}: {load.sent} requests in {load.wall_s:.2f} s = {rate:.1f} req/s; "
        f"answers {dict(load.answers)}"
    ]
    if cpu is not None and load.sent:
        split = ", ".join(f"{role} {s:.2f} s" for role, s in cpu.workers().items())
        lines.append(
            f"  server CPU {cpu.server_s:.2f} s = {cpu.server_s / load.sent * 1000:.2f} ms per request "
            f"({split}); load generator {load.client_cpu_s / load.sent * 1000:.2f} ms per request"
        )
        if cpu.database_s is not None:
            lines.append(f"  PostgreSQL backends {cpu.database_s / load.sent * 1000:.2f} ms per request")
    return "\n".join(lines)


def top_table(stats: FrameStats, top: int) -> str:
    if not stats.samples:
        return "no samples"
    out = [f"{stats.samples:.1f} s of samples (CPU, idle threads left out)", "", "By own time:"]
    for name, n in stats.own.most_common(top):
        out.append(f"  {n / stats.samples:6.1%}  {name}")
    out += ["", "By total time (the frame anywhere in the stack):"]
    for name, n in stats.total.most_common(top):
        out.append(f"  {n / stats.samples:6.1%}  {name}")
    out += ["", "Own time by area:"]
    for name, n in stats.areas.most_common():
        out.append(f"  {n / stats.samples:6.1%}  {name}")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    requests = args.requests or (800 if args.scenario == "signup" else 6000)
    workdir = Path(tempfile.mkdtemp(prefix="keyhall-profile-"))
    env = dict(kv.split("=", 1) for kv in args.env)
    output: Path = (
        args.output or Path(tempfile.gettempdir()) / f"keyhall-{args.scenario}-{args.db}.speedscope.json"
    )
    if not args.no_profile:
        output.unlink(missing_ok=True)  # never report a stale file
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with serving(args.db, args.workers, workdir, env) as server:
            print(asyncio.run(_run(server, args, requests, output)))
        if not args.no_profile and output.exists():
            print("\n" + top_table(frame_stats(output), args.top))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.no_profile:
        print(f"\nspeedscope file: {output}")
    return 0


async def _run(server: RunningServer, args: argparse.Namespace, requests: int, output: Path) -> str:
    headers = {"x-genauth-app-id": server.app_id}
    path = SIGNUP_PATH
    if args.scenario == "profile":
        headers["authorization"] = "Bearer " + await access_token(server)
        path = PROFILE_PATH
    database = make_url(server.database_url).database if args.db == "postgres" else None
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    report: list[str] = [
        f"scenario {args.scenario} on {args.db}, keyhall serve --workers {args.workers}, "
        f"concurrency {args.concurrency}" + (f", env {args.env}" if args.env else "")
    ]
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=headers, timeout=120, limits=limits
    ) as client:
        tag = uuid.uuid4().hex[:8]
        warm = await drive(
            client, planned(args.scenario, max(args.concurrency, 64), "warm" + tag), args.concurrency, path
        )
        report.append(describe(warm, None, "warm-up"))
        for round_ in range(args.repeat):
            bodies = planned(args.scenario, requests, f"{round_}.{tag}")
            sampler = None
            if not args.no_profile and round_ == 0:
                extra = (["--gil"] if args.mode == "gil" else []) + args.py_spy
                sampler = await asyncio.to_thread(Sampler, server.process.pid, output, args.rate, extra)
            watch = CpuWatch(server.process.pid, database)
            watch.start()
            loops = ThreadWatch(server.process.pid)
            load = await drive(client, bodies, args.concurrency, path)
            cpu = watch.stop()
            threads = loops.describe(load.sent)
            if sampler is not None:
                await asyncio.to_thread(sampler.stop)
            report.append(describe(load, cpu, f"run {round_ + 1}" + (" (sampled)" if sampler else "")))
            report.append(threads)
    return "\n".join(report)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--scenario", choices=("signup", "profile"), default="signup")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, help="per run (default 800 sign-ups or 6000 reads)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--repeat", type=int, default=1, help="loads on the same server (only the first sampled)"
    )
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="frames listed")
    parser.add_argument(
        "--mode",
        choices=("gil", "all"),
        default="gil",
        help="gil: sample only the thread holding the GIL (the event loops' work; argon2 and SQLite "
        "release it), all: every thread not idle (threads waiting for a core count too)",
    )
    parser.add_argument(
        "--py-spy", action="append", default=[], metavar="ARG", help="extra py-spy record argument"
    )
    parser.add_argument("--no-profile", action="store_true", help="measure only, without py-spy")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEYHALL_X=VALUE", help="server setting"
    )
    parser.add_argument("--output", type=Path, help="speedscope file to keep (default: a temporary one)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
