"""Sign-ups at 1, 16 and 64 clients against the argon2 limit, and Keyhall side by side with FastAPI-Users.

- ``signups``: ``keyhall serve --workers 2`` and the peer (bench/peer, FastAPI-Users under uvicorn with
  as many workers), both up on fresh databases; at each concurrency a Keyhall load and a peer load
  (``POST /auth/register``, same bodies), in turn. Around each load, with the servers idle, the argon2
  limit is read (bench.limit); sign-ups/s over it is the share of the machine's hashing capacity that
  reached users as sign-ups.
- ``reads``: users signed up and signed in once (not measured), then ``GET /api/v3/get-profile`` on
  Keyhall and ``GET /users/me`` on the peer, each with a valid bearer token, in turn at each concurrency.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.limit import Argon2Limit, Limit, merge_limits
from bench.load import encode_json, encode_request, envelope_of, http_status_of
from bench.peer_server import PeerServer, peer_server
from bench.scenarios import (
    OK,
    PASSWORD,
    REQUEST_TIMEOUT_S,
    UNCACHED,
    WORKERS,
    Check,
    LogSummary,
    Run,
    Sizes,
    _common_checks,
    _measure,
    _Measured,
    email_body,
    keyhall_server,
    measure_requests,
    read_log,
)
from tests.support.servers import RunningServer

PEER = "FastAPI-Users"
PEER_CREATED = "HTTP 201"
PEER_OK = "HTTP 200"
PROFILE_PATH = "/api/v3/get-profile"


def signups(backend: str, sizes: Sizes, workdir: Path, limit: Argon2Limit) -> list[Run]:
    """Keyhall and the peer, both up on fresh databases, their loads in turn at each concurrency.

    Taking turns (Keyhall first at one concurrency, the peer first at the next) keeps each pair of
    figures close in time on a machine whose other work comes and goes.
    """
    runs: list[Run] = []
    with keyhall_server(backend, workdir) as server, peer_server(backend, workdir, WORKERS) as peer:
        for index, concurrency in enumerate(sizes.levels):
            pair = [
                _keyhall_signups(server, sizes, limit, concurrency),
                _peer_signups(peer, sizes, limit, concurrency),
            ]
            if index % 2:
                pair.reverse()
            runs += [make() for make in pair]
    return runs


def _keyhall_signups(server: RunningServer, sizes: Sizes, limit: Argon2Limit, concurrency: int) -> Any:
    def make() -> Run:
        tag = uuid.uuid4().hex[:8]
        count = sizes.signups_serial if concurrency == 1 else sizes.signups
        warmup = [email_body(f"warmup-{i}.{tag}@example.com") for i in range(_warmup(sizes, concurrency))]
        bodies = [email_body(f"user-{i}.{tag}@example.com") for i in range(count)]
        readings: list[Limit] = []
        already = server.user_count()
        measured = asyncio.run(
            _measure(
                server,
                warmup,
                [bodies],
                concurrency,
                sizes.deadline_s,
                before=functools.partial(_take_limit, limit, sizes, readings),
                after=functools.partial(_take_limit, limit, sizes, readings),
            )
        )
        log = read_log(server, measured.log_offset)
        checks = _common_checks(server, measured, frozenset({OK}), log, already)
        run = Run(server.backend, measured.load, frozenset({OK}), len(warmup), measured.cpu, log, checks)
        run.limit, run.limit_readings, run.split = merge_limits(readings), readings, measured.split
        return run

    return make


def _peer_signups(server: PeerServer, sizes: Sizes, limit: Argon2Limit, concurrency: int) -> Any:
    def make() -> Run:
        register = functools.partial(
            encode_json, "POST", "/auth/register", server.base_url.removeprefix("http://"), {}
        )
        tag = uuid.uuid4().hex[:8]
        count = sizes.signups_serial if concurrency == 1 else sizes.signups
        warmup = [
            register({"email": f"warmup-{i}.{tag}@example.com", "password": PASSWORD})
            for i in range(_warmup(sizes, concurrency))
        ]
        requests = [
            register({"email": f"user-{i}.{tag}@example.com", "password": PASSWORD}) for i in range(count)
        ]
        readings: list[Limit] = []
        already = server.user_count()
        measured = asyncio.run(
            measure_requests(
                server,
                warmup,
                [requests],
                concurrency,
                sizes.deadline_s,
                label=http_status_of,
                probe_path="/health",
                before=functools.partial(_take_limit, limit, sizes, readings),
                after=functools.partial(_take_limit, limit, sizes, readings),
            )
        )
        expected = frozenset({PEER_CREATED})
        checks = _peer_checks(server, measured, stored_per=PEER_CREATED, already=already)
        log = _peer_log(server, measured.log_offset)
        run = Run(server.backend, measured.load, expected, len(warmup), measured.cpu, log, checks)
        run.server, run.limit, run.split = PEER, merge_limits(readings), measured.split
        run.limit_readings = readings
        return run

    return make


def reads(backend: str, sizes: Sizes, workdir: Path) -> list[Run]:
    """Keyhall's get-profile and the peer's /users/me, both servers up, in turn at each concurrency;
    then a Keyhall server with the user cache off at each concurrency (the peer idle). Not all three at
    once: their pooled PostgreSQL connections would pass the database's max_connections (100)."""
    runs: list[Run] = []
    with peer_server(backend, workdir, WORKERS) as peer:
        theirs = asyncio.run(_peer_tokens(peer, sizes.read_users))
        peer_host = peer.base_url.removeprefix("http://")
        their_requests = [
            encode_request("GET", "/users/me", peer_host, {"authorization": f"Bearer {token}"})
            for token in theirs
        ]

        def peer_reads(concurrency: int) -> Run:
            measured = asyncio.run(
                _read_load(peer, their_requests, sizes, concurrency, http_status_of, "/health")
            )
            checks = _peer_checks(peer, measured, stored_per=None)
            log = _peer_log(peer, measured.log_offset)
            expected = frozenset({PEER_OK})
            run = Run(backend, measured.load, expected, sizes.warmup, measured.cpu, log, checks)
            run.server, run.kind, run.split = PEER, "read", measured.split
            return run

        with keyhall_server(backend, workdir) as server:
            ours = _keyhall_reads(backend, server, "Keyhall", sizes)
            for index, concurrency in enumerate(sizes.levels):
                pair = [ours, peer_reads]
                if index % 2:
                    pair.reverse()
                runs += [make(concurrency) for make in pair]
        with keyhall_server(backend, workdir, {"KEYHALL_USER_CACHE_SIZE": "0"}) as server:
            uncached = _keyhall_reads(backend, server, UNCACHED, sizes)
            runs += [uncached(concurrency) for concurrency in sizes.levels]
    return runs


def _keyhall_reads(backend: str, server: RunningServer, name: str, sizes: Sizes) -> Callable[[int], Run]:
    """A read load on ``server`` at a given concurrency, its users signed in first (not measured)."""
    host = server.base_url.removeprefix("http://")
    requests = [
        encode_request(
            "GET", PROFILE_PATH, host, {"x-genauth-app-id": server.app_id, "authorization": f"Bearer {token}"}
        )
        for token in asyncio.run(_keyhall_tokens(server, sizes.read_users))
    ]

    def measure(concurrency: int) -> Run:
        measured = asyncio.run(_read_load(server, requests, sizes, concurrency, envelope_of, "/healthz"))
        log = read_log(server, measured.log_offset, PROFILE_PATH)
        checks = _read_checks(measured, frozenset({OK}), log)
        run = Run(backend, measured.load, frozenset({OK}), sizes.warmup, measured.cpu, log, checks)
        run.server, run.kind, run.split = name, "read", measured.split
        return run

    return measure


# --- helpers -------------------------------------------------------------------------------------------


def _warmup(sizes: Sizes, concurrency: int) -> int:
    """At least one warm-up request per connection, so that every connection has been used once."""
    return max(sizes.warmup, concurrency)


def _take_limit(limit: Argon2Limit, sizes: Sizes, into: list[Limit]) -> None:
    into.append(limit.measure(sizes.limit_hashes))


async def _read_load(
    server: Any, requests: list[bytes], sizes: Sizes, concurrency: int, label: Any, probe: str
) -> _Measured:
    count = sizes.reads_serial if concurrency == 1 else sizes.reads
    batch = [requests[i % len(requests)] for i in range(count)]
    warmup = [requests[i % len(requests)] for i in range(_warmup(sizes, concurrency))]
    return await measure_requests(
        server, warmup, [batch], concurrency, sizes.deadline_s, label=label, probe_path=probe
    )


async def _gather_limited(count: int, call: Any, parallel: int = 8) -> list[Any]:
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> Any:
        async with gate:
            return await call(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _keyhall_tokens(server: RunningServer, users: int) -> list[str]:
    """Sign ``users`` users up and in (not measured); their access tokens."""
    tag = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}, timeout=REQUEST_TIMEOUT_S
    ) as client:

        async def one(i: int) -> str:
            email = f"reader-{i}.{tag}@example.com"
            signed_up = (await client.post("/api/v3/signup", json=email_body(email))).json()
            if signed_up.get("statusCode") != 200:
                raise RuntimeError(f"sign-up for the read load failed: {signed_up}")
            body = {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": PASSWORD}}
            answer = (await client.post("/api/v3/signin", json=body)).json()
            if answer.get("statusCode") != 200:
                raise RuntimeError(f"sign-in for the read load failed: {answer}")
            return str(answer["data"]["access_token"])

        return await _gather_limited(users, one)


async def _peer_tokens(server: PeerServer, users: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S) as client:

        async def one(i: int) -> str:
            email = f"reader-{i}.{tag}@example.com"
            created = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
            if created.status_code != 201:
                raise RuntimeError(f"the peer's register failed: {created.status_code} {created.text}")
            login = await client.post("/auth/jwt/login", data={"username": email, "password": PASSWORD})
            if login.status_code != 200:
                raise RuntimeError(f"the peer's login failed: {login.status_code} {login.text}")
            return str(login.json()["access_token"])

        return await _gather_limited(users, one)


def _read_checks(measured: _Measured, expected: frozenset[str], log: LogSummary) -> list[Check]:
    load = measured.load
    counts = load.counts()
    unexpected = load.unexpected(expected)
    return [
        Check(
            "every answer as expected",
            unexpected == 0,
            f"{unexpected} of {load.sent} answers outside {{{', '.join(sorted(expected))}}}",
        ),
        Check("every request sent in time", load.not_sent == 0, f"{load.not_sent} not sent (deadline)"),
        Check(
            "server log agrees with the client",
            log.outcomes == counts,
            "same outcomes"
            if log.outcomes == counts
            else f"log {dict(sorted(log.outcomes.items()))} vs client {dict(sorted(counts.items()))}",
        ),
        Check(
            "no warning/error lines in the server log",
            not log.notable,
            f"{len(log.notable)} notable lines",
        ),
    ]


def _peer_checks(
    server: PeerServer, measured: _Measured, stored_per: str | None, already: int = 0
) -> list[Check]:
    """The suite's own checks on a peer load. The peer's answers other than success are not a check:
    they are its error count, a result the tables report (and its log's exceptions are shown)."""
    load = measured.load
    checks = [
        Check("every request sent in time", load.not_sent == 0, f"{load.not_sent} not sent (deadline)"),
    ]
    if stored_per is not None:
        stored = server.user_count() - already
        created = load.counts()[stored_per] + measured.warm.counts()[stored_per]
        checks.append(
            Check(
                f"users stored = {stored_per} answers",
                stored == created,
                f"{stored} users in the database"
                + (f" beyond the {already} stored before" if already else "")
                + f", {created} answers {stored_per} (warm-up included)",
            )
        )
    return checks


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*")


def _peer_log(server: PeerServer, measured_from: int) -> LogSummary:
    """The exceptions the peer logged during the load (the last line of each traceback), as notable."""
    summary = LogSummary()
    tail = server.log_path.read_bytes()[measured_from:].decode("utf-8", errors="replace")
    for line in tail.splitlines():
        if _EXCEPTION.match(line):
            summary.notable.append(line)
    return summary
