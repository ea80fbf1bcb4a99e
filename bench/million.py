"""The million-users scenario: does a sign-up get slower when the users table already holds 1,000,000 rows?

Per database kind, two ``keyhall serve --workers 2``, both on a schema migrated by ``keyhall init``:
one empty, one bulk-loaded. The loaded rows are copies of a real row (a user the empty server signed
up through the API, read back raw), so every column holds what the server itself writes, with a
distinct time-ordered id, a distinct realistic email and username (their normalised forms filled as the
server fills them) and one precomputed argon2id hash shared by all. The load goes through the real
table and every index it has: COPY (asyncpg's binary ``copy_records_to_table``) on PostgreSQL, then
ANALYZE, as autovacuum would after such a load; ``executemany`` in transactions of 100,000 rows on
SQLite, with ``synchronous=OFF`` for the loading connection only, then a WAL checkpoint.

Then sign-ups one at a time, alternating between the two servers (which one goes first swaps every
pair), so that both see the same machine: the ratio of their latency percentiles is the figure.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.load import SIGNUP_PATH, LoadResult, Outcome, connections, encode_json, encode_request, envelope_of
from bench.scenarios import (
    OK,
    PASSWORD,
    REQUEST_TIMEOUT_S,
    Check,
    Run,
    ScenarioResult,
    Sizes,
    _serving,
    email_body,
    keyhall_server,
    read_log,
)
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    keyhall,
)

CHUNK = 100_000
WARMUP_EACH = 8
FIRST = (
    "james mary robert patricia john jennifer michael linda david elizabeth william barbara richard susan "
    "joseph jessica thomas sarah charles karen wei fang li na yuki haruto sofia lucas emma noah olivia "
    "liam ana pedro chen jun aisha omar fatima ivan olga"
).split()
LAST = (
    "smith johnson williams brown jones garcia miller davis rodriguez martinez wang li zhang liu chen "
    "yang huang zhao wu zhou tanaka suzuki kim lee park nguyen tran silva santos oliveira muller "
    "schmidt schneider fischer weber rossi russo ferrari petrov ivanova"
).split()
DOMAINS = "mail.example example.org example.net post.example inbox.example corp.example".split()


@dataclass
class Loaded:
    users: int
    seconds: float
    size_mb: float


def run(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    for backend in ("sqlite", "postgres"):
        empty_run, full_run, loaded = _compare(backend, sizes, workdir)
        result.runs += [empty_run, full_run]
        result.notes.append(
            f"- {_name(backend)}: {loaded.users:,} users bulk-loaded in {loaded.seconds:.1f} s "
            f"({loaded.users / loaded.seconds:,.0f} rows/s), users table with its indexes "
            f"{loaded.size_mb:,.0f} MB."
        )
    result.notes.append("")


def _compare(backend: str, sizes: Sizes, workdir: Path) -> tuple[Run, Run, Loaded]:
    with keyhall_server(backend, workdir) as empty:
        template = _template(empty)
        with _loaded_server(backend, workdir, sizes.million_users, template, empty) as (full, loaded):
            empty_load, full_load, warm = asyncio.run(_alternate(empty, full, sizes))
            runs = []
            for server, load, users in ((empty, empty_load, 1), (full, full_load, loaded.users)):
                log = read_log(server, 0)
                stored = server.user_count()
                created = load.counts()[OK] + warm
                unexpected = load.unexpected(frozenset({OK}))
                checks = [
                    Check(
                        "every answer as expected",
                        unexpected == 0,
                        f"{unexpected} of {load.sent} answers outside {{{OK}}}",
                    ),
                    Check(
                        "users stored = loaded + 200 answers",
                        stored == users + created,
                        f"{stored:,} users in the database, {users:,} before the load ("
                        + ("the template user" if server is empty else "bulk-loaded")
                        + f"), {created} answers 200 (warm-up included)",
                    ),
                    Check(
                        "no warning/error lines in the server log",
                        not log.notable,
                        f"{len(log.notable)} notable lines",
                    ),
                ]
                run = Run(backend, load, frozenset({OK}), WARMUP_EACH, None, log, checks)
                run.kind = "empty" if server is empty else "million"
                runs.append(run)
    return runs[0], runs[1], loaded


# --- the template row and the generated rows ----------------------------------------------------------


def _template(server: RunningServer) -> dict[str, Any]:
    """A user signed up through the API, read back as the database stores it."""
    import httpx

    body = {
        "connection": "PASSWORD",
        "passwordPayload": {
            "email": "template.user@mail.example",
            "username": "templateu",
            "password": PASSWORD,
        },
    }
    answer = httpx.post(
        f"{server.base_url}{SIGNUP_PATH}", json=body, headers={"x-genauth-app-id": server.app_id}, timeout=60
    ).json()
    if answer.get("statusCode") != 200:
        raise RuntimeError(f"the template sign-up failed: {answer}")
    user_id = answer["data"]["userId"]
    if server.backend == "sqlite":
        path = make_url(server.database_url).database
        with sqlite3.connect(str(path)) as conn:
            cursor = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,))
            names = [d[0] for d in cursor.description]
            return dict(zip(names, cursor.fetchone(), strict=True))

    async def fetch() -> dict[str, Any]:
        conn = await _pg_connect(server.database_url)
        try:
            row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
            return dict(row)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _rows(template: dict[str, Any], count: int, replace: dict[Any, Any]) -> Iterator[tuple[Any, ...]]:
    """``count`` rows like ``template``: distinct ids, emails and usernames, one shared hash."""
    rng = random.Random(1_000_000)
    shared = {k: replace.get(v, v) if isinstance(v, str) else v for k, v in template.items()}
    columns = list(template)
    start_ms = int(time.time() * 1000) - 365 * 86_400_000
    step_ms = max(1, 365 * 86_400_000 // max(count, 1))
    for i in range(count):
        first, last, domain = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS)
        email = f"{first}.{last}{i}@{domain}"
        username = f"{first}{last[0]}{i}"
        row = dict(shared)
        row["id"] = f"{start_ms + i * step_ms:012x}{rng.getrandbits(48):012x}"
        row["email"] = row["email_norm"] = email
        row["username"] = row["username_norm"] = username
        yield tuple(row[c] for c in columns)


def _replacements(
    template: dict[str, Any], empty: RunningServer, pool_id: str, app_id: str
) -> dict[str, str]:
    """Values of the template that belong to the empty server's pool and app, mapped to the loaded one's."""
    return {empty.pool_id: pool_id, empty.app_id: app_id}


# --- loading -------------------------------------------------------------------------------------------


@contextmanager
def _loaded_server(
    backend: str, workdir: Path, users: int, template: dict[str, Any], empty: RunningServer
) -> Iterator[tuple[RunningServer, Loaded]]:
    folder = workdir / f"million-{backend}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'keyhall.db'}"
        loaded = _load(url, users, template, empty)
        with _serving(backend, url, folder / "server.log") as server:
            yield server, loaded
        return
    url = create_postgres_database()
    try:
        loaded = _load(url, users, template, empty)
        with _serving(backend, url, folder / "server.log") as server:
            yield server, loaded
    finally:
        drop_postgres_database(url)


def _load(url: str, users: int, template: dict[str, Any], empty: RunningServer) -> Loaded:
    record = json.loads(keyhall("init", "--database-url", url, "--json").stdout.strip().splitlines()[-1])
    replace = _replacements(template, empty, record["pool_id"], record["app_id"])
    rows = _rows(template, users, replace)
    columns = list(template)
    started = time.perf_counter()
    if url.startswith("sqlite"):
        path = str(make_url(url).database)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=OFF")  # this loading connection only
            insert = f"INSERT INTO users ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            while chunk := [row for _, row in zip(range(CHUNK), rows, strict=False)]:
                conn.execute("BEGIN")
                conn.executemany(insert, chunk)
                conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name = 'users' OR name IN "
                "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users')"
            ).fetchone()[0]
        except sqlite3.OperationalError:  # no dbstat in this SQLite build: the whole file
            pages = Path(path).stat().st_size
        finally:
            conn.close()
        return Loaded(users, time.perf_counter() - started, (pages or 0) / 1e6)

    async def copy() -> float:
        conn = await _pg_connect(url)
        try:
            while chunk := [row for _, row in zip(range(CHUNK), rows, strict=False)]:
                async with conn.transaction():
                    await conn.copy_records_to_table("users", records=chunk, columns=columns)
            await conn.execute("ANALYZE users")
            return float(await conn.fetchval("SELECT pg_total_relation_size('users')"))
        finally:
            await conn.close()

    size = asyncio.run(copy())
    return Loaded(users, time.perf_counter() - started, size / 1e6)


async def _pg_connect(url: str) -> Any:
    import asyncpg

    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=parsed.database,
    )


# --- the alternating load ------------------------------------------------------------------------------


async def _alternate(
    empty: RunningServer, full: RunningServer, sizes: Sizes
) -> tuple[LoadResult, LoadResult, int]:
    """Sign-ups one at a time, alternating between the servers; each one's latencies, and warm-ups each."""
    tag = uuid.uuid4().hex[:8]
    results: dict[str, list[Outcome]] = {"empty": [], "full": []}
    servers = {"empty": empty, "full": full}
    encoders = {
        key: functools.partial(
            encode_json,
            "POST",
            SIGNUP_PATH,
            s.base_url.removeprefix("http://"),
            {"x-genauth-app-id": s.app_id},
        )
        for key, s in servers.items()
    }
    requests = {
        key: [encode(email_body(f"probe-{i}.{key}.{tag}@example.com")) for i in range(sizes.million_signups)]
        for key, encode in encoders.items()
    }
    warmups = {
        key: [encode(email_body(f"warmup-{i}.{key}.{tag}@example.com")) for i in range(WARMUP_EACH)]
        for key, encode in encoders.items()
    }
    probe_empty = encode_request("GET", "/healthz", empty.base_url.removeprefix("http://"))
    probe_full = encode_request("GET", "/healthz", full.base_url.removeprefix("http://"))
    cpu_start = time.process_time()
    async with (
        connections(empty.base_url, 1, REQUEST_TIMEOUT_S, probe_empty) as pool_empty,
        connections(full.base_url, 1, REQUEST_TIMEOUT_S, probe_full) as pool_full,
    ):
        pools = {"empty": pool_empty.all[0], "full": pool_full.all[0]}
        for key in ("empty", "full"):
            for request in warmups[key]:
                await pools[key].exchange(request)
        for i in range(sizes.million_signups):
            order = ("empty", "full") if i % 2 == 0 else ("full", "empty")
            for key in order:
                sent = time.perf_counter()
                try:
                    status, body = await pools[key].exchange(requests[key][i])
                    label = envelope_of(status, body)
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    label = f"client error: {type(exc).__name__}"
                results[key].append(Outcome(time.perf_counter() - sent, label))
    cpu = time.process_time() - cpu_start

    def load(key: str) -> LoadResult:
        outcomes = results[key]
        return LoadResult(
            planned=sizes.million_signups,
            concurrency=1,
            wall_s=sum(o.latency_s for o in outcomes),
            outcomes=outcomes,
            client_cpu_s=cpu / 2,
        )

    return load("empty"), load("full"), WARMUP_EACH


def _name(backend: str) -> str:
    return {"sqlite": "SQLite", "postgres": "PostgreSQL"}[backend]
