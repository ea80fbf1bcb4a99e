"""Sign-ups at 1, 16 and 64 clients against the argon2 limit, and Keyhall side by side with FastAPI-Users.

- ``keyhall_signups``: for each concurrency a fresh ``keyhall serve --workers 2``; after the warm-up,
  with the server idle, the argon2 limit is measured (bench.limit), then the load runs. The ratio of the
  two is the share of the machine's hashing capacity that reached users as sign-ups.
- ``peer_signups``: the same loads against FastAPI-Users' ``POST /auth/register`` (bench/peer), same
  workers, same argon2 parameters, same limit measurement.
- ``reads``: users signed up and signed in once (not measured), then ``GET /api/v3/get-profile`` on
  Keyhall and ``GET /users/me`` on the peer, each with a valid bearer token, at every concurrency.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import Counter
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


def keyhall_signups(backend: str, sizes: Sizes, workdir: Path, limit: Argon2Limit) -> list[Run]:
    """One server, the loads one after the other (each with its own emails, warm-up and limit readings)."""
    runs: list[Run] = []
    with keyhall_server(backend, workdir) as server:
        for concurrency in sizes.levels:
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
            run = Run(backend, measured.load, frozenset({OK}), len(warmup), measured.cpu, log, checks)
            run.limit, run.limit_readings, run.split = merge_limits(readings), readings, measured.split
            runs.append(run)
    return runs


def peer_signups(backend: str, sizes: Sizes, workdir: Path, limit: Argon2Limit) -> list[Run]:
    runs: list[Run] = []
    with peer_server(backend, workdir, WORKERS) as server:
        register = functools.partial(
            encode_json, "POST", "/auth/register", server.base_url.removeprefix("http://"), {}
        )
        for concurrency in sizes.levels:
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
            checks = _peer_checks(server, measured, expected, stored_per=PEER_CREATED, already=already)
            run = Run(backend, measured.load, expected, len(warmup), measured.cpu, LogSummary(), checks)
            run.server, run.limit, run.split = PEER, merge_limits(readings), measured.split
            run.limit_readings = readings
            runs.append(run)
    return runs


def reads(backend: str, sizes: Sizes, workdir: Path) -> list[Run]:
    """Keyhall's get-profile and the peer's /users/me at every concurrency, on one server each."""
    runs: list[Run] = []
    with keyhall_server(backend, workdir) as server:
        tokens = asyncio.run(_keyhall_tokens(server, sizes.read_users))
        host = server.base_url.removeprefix("http://")
        requests = [
            encode_request(
                "GET",
                PROFILE_PATH,
                host,
                {"x-genauth-app-id": server.app_id, "authorization": f"Bearer {token}"},
            )
            for token in tokens
        ]
        for concurrency in sizes.levels:
            measured = asyncio.run(_read_load(server, requests, sizes, concurrency, envelope_of, "/healthz"))
            log = read_log(server, measured.log_offset, PROFILE_PATH)
            checks = _read_checks(measured, frozenset({OK}), log)
            run = Run(backend, measured.load, frozenset({OK}), sizes.warmup, measured.cpu, log, checks)
            run.kind, run.split = "read", measured.split
            runs.append(run)
    with peer_server(backend, workdir, WORKERS) as peer:
        tokens = asyncio.run(_peer_tokens(peer, sizes.read_users))
        host = peer.base_url.removeprefix("http://")
        requests = [
            encode_request("GET", "/users/me", host, {"authorization": f"Bearer {token}"}) for token in tokens
        ]
        for concurrency in sizes.levels:
            measured = asyncio.run(_read_load(peer, requests, sizes, concurrency, http_status_of, "/health"))
            expected = frozenset({PEER_OK})
            checks = _peer_checks(peer, measured, expected, stored_per=None)
            run = Run(backend, measured.load, expected, sizes.warmup, measured.cpu, LogSummary(), checks)
            run.server, run.kind, run.split = PEER, "read", measured.split
            runs.append(run)
    return runs


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
    server: PeerServer,
    measured: _Measured,
    expected: frozenset[str],
    stored_per: str | None,
    already: int = 0,
) -> list[Check]:
    load = measured.load
    unexpected = load.unexpected(expected)
    checks = [
        Check(
            "every answer as expected",
            unexpected == 0,
            f"{unexpected} of {load.sent} answers outside {{{', '.join(sorted(expected))}}}",
        ),
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
    tracebacks = Counter(
        line.split(":", 1)[0]
        for line in server.log_text().splitlines()
        if line.startswith(("ERROR", "Traceback", "CRITICAL"))
    )
    checks.append(
        Check(
            "no error lines in the peer's log",
            not tracebacks,
            ", ".join(f"{n} {kind}" for kind, n in tracebacks.items()) or "none",
        )
    )
    return checks
