"""The benchmark scenarios. Each one gets a fresh database and a fresh ``keyhall serve --workers 2``.

Servers are the ones the tests use (``tests.support.servers``): a real subprocess on 127.0.0.1, its log
captured to a file. Every server is stopped, and every PostgreSQL database dropped, however a scenario
ends. Besides the client-side figures each run records the server's CPU time (from ``/proc``), what the
server log says it answered, and whether the database holds the users the answers claim.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import signal
import subprocess
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import make_url

from bench.cpu import CpuUse, CpuWatch, cmdline, descendants
from bench.load import (
    SIGNUP_PATH,
    Labeler,
    LoadResult,
    connections,
    encode_json,
    encode_request,
    envelope_label,
    envelope_of,
    run_load,
)
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.crypto.passwords import Argon2Params, PasswordHasher
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    start_server,
)

if TYPE_CHECKING:
    from bench.limit import Argon2Limit, Limit

WORKERS = 2
UNCACHED = "Keyhall, user cache off"  # the reads' second Keyhall server: KEYHALL_USER_CACHE_SIZE=0
PASSWORD = "Blue-Harbor-7-Lantern"  # passes the default NIST policy; not a common password
OK = "200"
EMAIL_TAKEN = "409/2026"
INVALID_EMAIL = "400/2003"
REQUEST_TIMEOUT_S = 60.0  # twice SQLite's busy timeout: an answer this late is a stall, not a result


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; ``FULL`` for the published figures, ``QUICK`` for a smoke run."""

    signups: int
    concurrency: int
    warmup: int
    race_rounds: int
    racers: int
    rejected: int
    hash_samples: int
    hash_batch: int
    hash_threads: int
    deadline_s: float
    levels: tuple[int, ...] = (1, 16, 64)  # concurrencies of the sign-up and read sweeps
    signups_serial: int = 150  # sign-ups at concurrency 1 (``signups`` at the others)
    limit_hashes: int = 40  # hashes per process for each argon2-limit reading
    # Reads per level (``reads_serial`` at concurrency 1). With the user cache Keyhall answers 4,000 reads
    # in under a second, where one stall of the shared machine moved the ratio by a tenth.
    reads: int = 12_000
    reads_serial: int = 3000
    read_users: int = 64  # users signed in for the reads (their tokens are used in turn)
    million_users: int = 1_000_000  # users bulk-loaded before the sign-ups of million-users
    million_signups: int = 300  # sign-ups per database in million-users, one at a time
    sm2_each: int = 200  # sign-ups of each kind (plain, sm2) in sm2-signup


FULL = Sizes(
    signups=800,
    concurrency=16,
    warmup=16,
    race_rounds=10,
    racers=40,
    rejected=400,
    hash_samples=20,
    hash_batch=100,
    hash_threads=2,
    deadline_s=180.0,
)
QUICK = Sizes(
    signups=64,
    concurrency=16,
    warmup=16,
    race_rounds=1,
    racers=40,
    rejected=48,
    hash_samples=5,
    hash_batch=8,
    hash_threads=2,
    deadline_s=60.0,
    levels=(1, 64),
    signups_serial=8,
    limit_hashes=4,
    reads=128,
    reads_serial=64,
    read_users=8,
    million_users=5_000,
    million_signups=10,
    sm2_each=16,
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class LogSummary:
    """What the server log says about the measured requests, and any line worth a look."""

    outcomes: Counter[str] = field(default_factory=Counter)
    durations_ms: list[float] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)
    notable: list[str] = field(default_factory=list)
    locked: int = 0
    glued: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One load against one server."""

    backend: str
    load: LoadResult
    expected: frozenset[str]
    warmup: int
    cpu: CpuUse | None
    log: LogSummary
    checks: list[Check]
    rounds: list[Counter[str]] = field(default_factory=list)
    server: str = "Keyhall"  # or "FastAPI-Users" (the peer), or UNCACHED
    kind: str = "signup"  # or "read"
    limit: Limit | None = None  # the argon2 limit around this load (readings before and after, merged)
    limit_readings: list[Limit] = field(default_factory=list)
    split: dict[int, int] = field(default_factory=dict)  # worker pid -> connections it held

    @property
    def server_cpu_s(self) -> float | None:
        return None if self.cpu is None else self.cpu.server_s


@dataclass
class HashFigures:
    params: Argon2Params
    samples_ms: list[float]
    sample_cpu_ms: list[float]
    threads: int
    batch: int
    batch_wall_s: float
    batch_cpu_s: float
    limit: Limit | None = None  # one process per core, bench.limit

    @property
    def median_ms(self) -> float:
        ordered = sorted(self.samples_ms)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    @property
    def hashes_per_s(self) -> float:
        return self.batch / self.batch_wall_s


@dataclass
class ScenarioResult:
    name: str
    title: str
    description: str
    runs: list[Run] = field(default_factory=list)
    hashing: HashFigures | None = None
    error: str | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # Markdown lines a scenario adds to its section

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for run in self.runs for c in run.checks)


# --- servers -------------------------------------------------------------------------------------------


@contextmanager
def keyhall_server(backend: str, workdir: Path, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """A fresh database and ``keyhall serve --workers 2`` on it (with ``env`` settings); both gone when
    the block ends."""
    folder = workdir / f"{backend}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    log_path = folder / "server.log"
    if backend == "sqlite":
        with _serving("sqlite", f"sqlite:///{folder / 'keyhall.db'}", log_path, env) as server:
            yield server
        return
    url = create_postgres_database()
    try:
        with _serving("postgres", url, log_path, env) as server:
            yield server
    finally:
        drop_postgres_database(url)


@contextmanager
def _serving(
    backend: str, url: str, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    server = start_server(backend, url, log_path, workers=WORKERS, env=env)
    children = descendants(server.process.pid) - {server.process.pid}
    try:
        yield server
    finally:
        server.stop()
        _end_leftovers(children)


_HELPERS = (b"resource_tracker", b"keyhall.server.crypto.hash_pool")  # not workers: they accept no HTTP


def worker_pids(root: int) -> list[int]:
    """The worker processes of a uvicorn server started as ``root`` (its children, less helpers: the
    resource tracker and the hashing processes, whose CPU counts as the server's all the same)."""
    return sorted(
        pid for pid in descendants(root) - {root} if not any(helper in cmdline(pid) for helper in _HELPERS)
    )


def _end_leftovers(pids: set[int]) -> None:
    """Workers of a server whose parent had to be killed: end them too (they are ours, by pid)."""
    for pid in pids:
        if b"python" not in cmdline(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


# --- the server log ------------------------------------------------------------------------------------

_NOTABLE = re.compile(r"error|exception|traceback|warn|critical|fatal|locked|timeout", re.IGNORECASE)


def read_log(server: RunningServer, measured_from: int, path: str = SIGNUP_PATH) -> LogSummary:
    """Tally the answers to ``path`` logged after byte ``measured_from``; flag notable lines anywhere."""
    summary = LogSummary()
    raw = server.log_path.read_bytes()
    for offset, line in _lines(raw):
        text = line.decode("utf-8", errors="replace").rstrip()
        if not text:
            continue
        if "database is locked" in text:
            summary.locked += 1
        records, rest = _json_records(text)
        if len(records) > 1 or (records and rest):
            summary.glued.append(text)
        if rest and (_NOTABLE.search(rest) or rest.startswith(("WARNING:", "ERROR:", "CRITICAL:"))):
            summary.notable.append(text)
        for record in records:
            _tally(summary, record, text, path, measured=offset >= measured_from)
    summary.durations_ms.sort()
    return summary


def _tally(summary: LogSummary, record: dict[str, Any], text: str, path: str, *, measured: bool) -> None:
    level = str(record.get("level", "?"))
    summary.levels[level] += 1
    is_request = record.get("event") == "request"
    # A 4xx request line carries the domain error's id in its "error" field: that is an answer, not a
    # failure. Anything else that mentions an error is worth reading.
    # "uvicorn.error" is the name of uvicorn's general logger (start-up, shutdown), not a sign of one.
    fields = {k: v for k, v in record.items() if not (is_request and k == "error") and k != "logger"}
    if level not in ("info", "debug") or _NOTABLE.search(json.dumps(fields)):
        summary.notable.append(text)
    if is_request and record.get("path") == path and measured:
        http_status = record.get("http_status")
        label = (
            envelope_label(record.get("status_code"), record.get("api_code"))
            if http_status == 200
            else f"HTTP {http_status}"
        )
        summary.outcomes[label] += 1
        duration = record.get("duration_ms")
        if isinstance(duration, int | float):
            summary.durations_ms.append(float(duration))


def _lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    for line in raw.splitlines(keepends=True):
        yield offset, line
        offset += len(line)


_DECODER = json.JSONDecoder()


def _json_records(text: str) -> tuple[list[dict[str, Any]], str]:
    """The JSON objects a line starts with (two workers may glue theirs together) and what follows."""
    records: list[dict[str, Any]] = []
    position = 0
    while position < len(text) and text[position] == "{":
        try:
            record, position = _DECODER.raw_decode(text, position)
        except ValueError:
            break
        if isinstance(record, dict):
            records.append(record)
        while position < len(text) and text[position].isspace():
            position += 1
    return records, text[position:]


async def _settle_log(server: Target) -> int:
    """The log's size once the lines of the requests already answered are written (they follow the answer)."""
    await asyncio.sleep(0.3)
    return server.log_path.stat().st_size


# --- bodies --------------------------------------------------------------------------------------------


def email_body(email: str) -> dict[str, Any]:
    return {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": PASSWORD}}


def mixed_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


# --- scenarios -----------------------------------------------------------------------------------------


@dataclass
class _Measured:
    load: LoadResult
    warm: LoadResult
    cpu: CpuUse | None
    log_offset: int
    rounds: list[LoadResult] = field(default_factory=list)
    split: dict[int, int] = field(default_factory=dict)  # worker pid -> connections it held


class Target(Protocol):
    """A server under load: Keyhall's RunningServer or the peer's PeerServer."""

    backend: str
    database_url: str
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]


async def _measure(
    server: RunningServer,
    warmup: list[dict[str, Any]],
    batches: list[list[dict[str, Any]]],
    concurrency: int,
    deadline_s: float,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> _Measured:
    """Sign-up bodies to Keyhall: warm up (not counted), then each batch in turn (see measure_requests)."""
    host = server.base_url.removeprefix("http://")
    encode = functools.partial(encode_json, "POST", SIGNUP_PATH, host, {"x-genauth-app-id": server.app_id})
    return await measure_requests(
        server,
        [encode(body) for body in warmup],
        [[encode(body) for body in batch] for batch in batches],
        concurrency,
        deadline_s,
        before=before,
        after=after,
    )


async def measure_requests(
    server: Target,
    warmup: list[bytes],
    batches: list[list[bytes]],
    concurrency: int,
    deadline_s: float,
    *,
    label: Labeler = envelope_of,
    probe_path: str = "/healthz",
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> _Measured:
    """Warm the server up (not counted), then send each batch of encoded requests in turn, timing them.

    ``before`` runs between the warm-up and the measured load, ``after`` right after it (the argon2
    limit is measured there, with the server idle and warm).
    """
    database = make_url(server.database_url).database if server.backend == "postgres" else None
    watch = CpuWatch(server.process.pid, database)
    probe = encode_request("GET", probe_path, server.base_url.removeprefix("http://"))
    async with connections(
        server.base_url,
        concurrency,
        REQUEST_TIMEOUT_S,
        probe,
        functools.partial(worker_pids, server.process.pid),
    ) as pool:
        warm = await run_load(pool, warmup, concurrency=concurrency, deadline_s=deadline_s, label=label)
        log_offset = await _settle_log(server)
        if before is not None:
            await asyncio.to_thread(before)
        watch.start()
        stop_at = time.perf_counter() + deadline_s
        rounds: list[LoadResult] = []
        for batch in batches:
            left = stop_at - time.perf_counter()
            rounds.append(
                await run_load(pool, batch, concurrency=concurrency, deadline_s=max(0.0, left), label=label)
            )
        cpu = watch.stop()
        if after is not None:
            await asyncio.to_thread(after)
        await _settle_log(server)
    return _Measured(LoadResult.merge(rounds), warm, cpu, log_offset, rounds, pool.split)


def _common_checks(
    server: RunningServer, measured: _Measured, expected: frozenset[str], log: LogSummary, already: int = 0
) -> list[Check]:
    """The checks every load gets; ``already``: users the database held before this load's warm-up."""
    load = measured.load
    counts = load.counts()
    unexpected = load.unexpected(expected)
    stored = server.user_count() - already
    created = counts[OK] + measured.warm.counts()[OK]
    log_agrees = log.outcomes == counts
    return [
        Check(
            "every answer as expected",
            unexpected == 0,
            f"{unexpected} of {load.sent} answers outside {{{', '.join(sorted(expected))}}}",
        ),
        Check("every request sent in time", load.not_sent == 0, f"{load.not_sent} not sent (deadline)"),
        Check(
            "users stored = 200 answers",
            stored == created,
            f"{stored} users in the database"
            + (f" beyond the {already} stored before" if already else "")
            + f", {created} answers 200 (warm-up included)",
        ),
        Check(
            "server log agrees with the client",
            log_agrees,
            "same outcomes"
            if log_agrees
            else f"log {dict(sorted(log.outcomes.items()))} vs client {dict(sorted(counts.items()))}",
        ),
        Check(
            "one log record per line",
            not log.glued,
            f"{len(log.glued)} lines held records of two writers glued together"
            if log.glued
            else "every line whole",
        ),
        Check(
            "no warning/error lines in the server log",
            not log.notable,
            f"{len(log.notable)} notable lines"
            + (f", {log.locked} 'database is locked'" if log.locked else ""),
        ),
    ]


def _load(
    backend: str,
    sizes: Sizes,
    workdir: Path,
    warmup: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
    expected: frozenset[str],
) -> Run:
    """One batch of requests at the scenario concurrency, with the common checks."""
    with keyhall_server(backend, workdir) as server:
        measured = asyncio.run(_measure(server, warmup, [bodies], sizes.concurrency, sizes.deadline_s))
        log = read_log(server, measured.log_offset)
        checks = _common_checks(server, measured, expected, log)
    return Run(backend, measured.load, expected, sizes.warmup, measured.cpu, log, checks)


def _race(backend: str, sizes: Sizes, workdir: Path) -> Run:
    tag = uuid.uuid4().hex[:8]
    rng = random.Random(2026)
    warmup = [email_body(f"warmup-{i}.{tag}@example.com") for i in range(sizes.warmup)]
    emails = [f"racer-{r}.{tag}@example.com" for r in range(sizes.race_rounds)]
    batches = [[email_body(mixed_case(email, rng)) for _ in range(sizes.racers)] for email in emails]
    expected = frozenset({OK, EMAIL_TAKEN})
    with keyhall_server(backend, workdir) as server:
        measured = asyncio.run(_measure(server, warmup, batches, sizes.racers, sizes.deadline_s))
        log = read_log(server, measured.log_offset)
        checks = _common_checks(server, measured, expected, log)
        rows = server.sql(
            "SELECT email_norm, count(*) FROM users WHERE email_norm LIKE :pattern GROUP BY email_norm",
            pattern=f"racer-%.{tag}@example.com",
        )
    rounds = [r.counts() for r in measured.rounds]
    winning = {OK: 1, EMAIL_TAKEN: sizes.racers - 1}
    clean = sum(1 for counts in rounds if dict(counts) == winning)
    per_email = {str(email): int(n) for email, n in rows}
    checks.append(
        Check(
            f"rounds with one 200 and {sizes.racers - 1} x {EMAIL_TAKEN}",
            clean == sizes.race_rounds,
            f"{clean} of {sizes.race_rounds} rounds",
        )
    )
    checks.append(
        Check(
            "one stored user per raced email",
            len(per_email) == sizes.race_rounds and set(per_email.values()) == {1},
            f"{len(per_email)} emails stored, counts {sorted(Counter(per_email.values()).items())}",
        )
    )
    return Run(backend, measured.load, expected, sizes.warmup, measured.cpu, log, checks, rounds)


def _rejected(backend: str, sizes: Sizes, workdir: Path) -> Run:
    warmup = [email_body(f"warmup-{i}-not-an-email") for i in range(sizes.warmup)]
    bodies = [email_body(f"user-{i}-not-an-email") for i in range(sizes.rejected)]
    return _load(backend, sizes, workdir, warmup, bodies, frozenset({INVALID_EMAIL}))


def _argon2(sizes: Sizes) -> HashFigures:
    import argon2

    params = Argon2Params()
    raw = argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        type=argon2.Type.ID,
    )
    raw.hash(PASSWORD)  # warm-up: the first call allocates
    samples_ms: list[float] = []
    cpu_ms: list[float] = []
    for _ in range(sizes.hash_samples):
        wall, cpu = time.perf_counter(), time.process_time()
        raw.hash(PASSWORD)
        samples_ms.append((time.perf_counter() - wall) * 1000)
        cpu_ms.append((time.process_time() - cpu) * 1000)

    async def batch() -> tuple[float, float]:
        hasher = PasswordHasher(CpuPool(sizes.hash_threads))
        await asyncio.gather(*(hasher.hash(PASSWORD, params) for _ in range(sizes.hash_threads)))
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(hasher.hash(PASSWORD, params) for _ in range(sizes.hash_batch)))
        return time.perf_counter() - wall, time.process_time() - cpu

    batch_wall, batch_cpu = asyncio.run(batch())
    return HashFigures(
        params=params,
        samples_ms=samples_ms,
        sample_cpu_ms=cpu_ms,
        threads=sizes.hash_threads,
        batch=sizes.hash_batch,
        batch_wall_s=batch_wall,
        batch_cpu_s=batch_cpu,
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    description: str
    run: Callable[[Sizes, Path, ScenarioResult], None]


_LIMIT: list[Argon2Limit] = []


def argon2_limit() -> Argon2Limit:
    """The run's hashing processes, one per core (started on first use, kept for the whole run)."""
    if not _LIMIT:
        from bench.facts import cores
        from bench.limit import Argon2Limit

        _LIMIT.append(Argon2Limit(cores()))
    return _LIMIT[0]


def close_limit() -> None:
    while _LIMIT:
        _LIMIT.pop().close()


def _signup_scenario(backend: str) -> Callable[[Sizes, Path, ScenarioResult], None]:
    def run(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
        from bench.peer_server import peer_versions
        from bench.sweep import signups  # bench.sweep builds on this module

        versions = peer_versions()
        if versions:
            result.notes += [
                "- The peer's virtualenv: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
                "",
            ]
        result.runs += signups(backend, sizes, workdir, argon2_limit())

    return run


def _reads_scenario(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    from bench.sweep import reads

    for backend in ("sqlite", "postgres"):
        result.runs += reads(backend, sizes, workdir)


def _million_scenario(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    from bench import million

    million.run(sizes, workdir, result)


def _race_scenario(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    for backend in ("sqlite", "postgres"):
        result.runs.append(_race(backend, sizes, workdir))


def _rejected_scenario(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    result.runs.append(_rejected("sqlite", sizes, workdir))


def _argon2_scenario(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    result.hashing = _argon2(sizes)
    result.hashing.limit = argon2_limit().measure(sizes.limit_hashes * 3)


def _sm2_scenario(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    from bench import sm2  # bench.sm2 builds on this module

    sm2.run(sizes, workdir, result)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "argon2-hash",
        "argon2id in-process (no server): the physical limit",
        "One hash at the server's default parameters, timed alone with argon2-cffi; then the limit, one "
        "hashing process per core started together (bench/limit.py); then a batch through keyhall's "
        "PasswordHasher with its concurrency limiter at 2 threads.",
        _argon2_scenario,
    ),
    Scenario(
        "signup-sqlite",
        "Email + password sign-ups on SQLite at 1, 16 and 64 clients, Keyhall and FastAPI-Users in turn",
        "Distinct emails, each one a new user: Keyhall's full path (validation, a uniqueness read, one "
        "argon2id hash, one insert) and the peer's `POST /auth/register` (bench/peer/app.py: "
        "FastAPI-Users' documented SQLAlchemy setup, JWT backend, argon2id at t=2, m=19456 KiB, p=1 "
        "through its PasswordHelper, under `uvicorn --workers 2` in its own virtualenv; it answers HTTP "
        "201). Both servers run on fresh databases side by side; at each concurrency their loads take "
        "turns (Keyhall first, then the peer first at the next), and each load has an argon2-limit "
        "reading (one process per core) right before and right after it, with the servers idle.",
        _signup_scenario("sqlite"),
    ),
    Scenario(
        "signup-postgres",
        "Email + password sign-ups on PostgreSQL at 1, 16 and 64 clients, Keyhall and FastAPI-Users in turn",
        "The same loads as signup-sqlite, against a fresh PostgreSQL database for each server.",
        _signup_scenario("postgres"),
    ),
    Scenario(
        "reads",
        "Reads with a valid token: Keyhall's get-profile against the peer's /users/me",
        "Users signed up and signed in first (not measured); then `GET /api/v3/get-profile` on Keyhall "
        "and `GET /users/me` on the peer, each with a valid bearer token (the users' tokens in turn), the "
        "two servers taking turns at every concurrency. Both verify the JWT. The peer reads the user "
        "from the database every time; Keyhall also checks the token's revocation and the user's status, "
        "reads both in one statement the first time and answers from its user cache until the database "
        "says the user changed. Then a second Keyhall server with the cache off "
        "(`KEYHALL_USER_CACHE_SIZE=0`), which reads the database every time as the peer does, at each "
        "concurrency.",
        _reads_scenario,
    ),
    Scenario(
        "million-users",
        "Sign-up latency with 1,000,000 users stored against an empty database",
        "Two servers per database kind, both migrated by `keyhall init`: one empty, one bulk-loaded "
        "through the real schema and its indexes (COPY on PostgreSQL, executemany in large transactions "
        "on SQLite; one precomputed argon2id hash shared by the loaded rows, distinct realistic emails "
        "and usernames). Then sign-ups one at a time, alternating between the two servers so that both "
        "see the same machine.",
        _million_scenario,
    ),
    Scenario(
        "duplicate-race",
        "Concurrent signups of one email in mixed case",
        "Each round sends 40 signups of one address, spelled in random mixed case, all at once (one "
        "connection each); a round is clean when exactly one answers 200 and the rest 409/2026. Racers "
        "that arrive after the winner committed are refused by the cheap uniqueness read; the ones "
        "already past it pay a full hash before the unique index refuses them.",
        _race_scenario,
    ),
    Scenario(
        "rejected-fast-path",
        "Signups refused before hashing (invalid email) on SQLite",
        "Every body has an invalid email, refused with 400/2003 before the password is hashed; the app is "
        "still looked up in the database on each request. The gap to signup-sqlite is what hashing (and "
        "the write) costs.",
        _rejected_scenario,
    ),
    Scenario(
        "sm2-signup",
        "Sign-ups with an SM2-encrypted password vs a plain one, sequential, on SQLite",
        "One request in flight at a time, alternating a plain-password sign-up and one whose password "
        "the client encrypted with SM2 (C1C3C2, key from `GET /api/v3/system`, ciphertexts made before "
        "timing). Each row's wall time is the sum of its own requests' latencies, so its req/s is 1 / mean "
        "latency. Then, in-process: one SM2 decryption by keyhall and by gmssl, and one argon2id hash for "
        "scale.",
        _sm2_scenario,
    ),
)

NAMES = tuple(s.name for s in SCENARIOS)


def run_scenario(scenario: Scenario, sizes: Sizes, workdir: Path) -> ScenarioResult:
    """Run one scenario; a failure is recorded in the result (with its traceback), not raised."""
    result = ScenarioResult(scenario.name, scenario.title, scenario.description)
    started = time.perf_counter()
    try:
        scenario.run(sizes, workdir, result)
    except Exception:
        result.error = traceback.format_exc(limit=8)
    finally:
        result.duration_s = time.perf_counter() - started
    return result
