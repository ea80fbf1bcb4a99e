"""The report's headline: sign-ups against the argon2 limit, the peer side by side, reads, a million users.

Each table is built from the runs of the sweep scenarios (bench/sweep.py, bench/million.py); a scenario
that did not run (``--only``) or failed leaves its table out, and the text says only what was measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from bench.facts import Facts
from bench.load import LoadResult
from bench.scenarios import UNCACHED, Run, ScenarioResult

PEER = "FastAPI-Users"
SIGNUP_SCENARIOS = ("signup-sqlite", "signup-postgres")
RATIO_TARGET = 0.9
READS_TARGET = 4.0
MILLION_TARGET = 1.10


def signup_runs(results: Iterable[ScenarioResult]) -> list[tuple[ScenarioResult, Run]]:
    return [
        (r, run)
        for r in results
        if r.name in SIGNUP_SCENARIOS and r.error is None
        for run in r.runs
        if run.kind == "signup"
    ]


def read_runs(results: Iterable[ScenarioResult]) -> list[Run]:
    return [run for r in results if r.name == "reads" and r.error is None for run in r.runs]


def million_runs(results: Iterable[ScenarioResult]) -> list[Run]:
    return [run for r in results if r.name == "million-users" and r.error is None for run in r.runs]


def render(facts: Facts, results: list[ScenarioResult], chart: str | None) -> list[str]:
    out: list[str] = []
    signups = [run for _, run in signup_runs(results)]
    if signups:
        out += _limit_table(facts, signups)
        out += _gap(facts, signups)
    peer = [run for run in signups if run.server == PEER]
    if peer:
        out += _side_by_side(signups)
    reads = read_runs(results)
    if reads:
        out += _reads_table(reads)
    million = million_runs(results)
    if million:
        out += _million_table(million, results)
    if chart:
        out += [
            f"![Throughput against concurrency: Keyhall on SQLite and PostgreSQL, FastAPI-Users, and the "
            f"argon2id limit]({chart})",
            "",
        ]
    out += [
        "Where the time goes inside a Keyhall worker (profiles of the sign-up path, and what was changed "
        "because of them): [docs/profiling.md](profiling.md).",
        "",
    ]
    return out


# --- sign-ups against the limit -----------------------------------------------------------------------


def _limit_table(facts: Facts, runs: list[Run]) -> list[str]:
    lines = [
        "## Sign-ups against the argon2 limit",
        "",
        "The limit is the raw argon2id rate at the server's parameters (t=2, m=19456 KiB, p=1) on all "
        f"{facts.cores} cores: one hashing process per core, started together, measured right before and "
        "right after each load with the server idle, the two readings merged (bench/limit.py). *Ratio* is"
        " sign-ups/s over that limit: the share of the machine's hashing capacity that reached users as "
        f"sign-ups (target >= {RATIO_TARGET} at 64 clients). *Errors* are answers other than a sign-up's "
        "success (and requests not sent). CPU per sign-up is user+system time from `/proc` over the load;"
        " the worker split is each uvicorn worker's share of the server's CPU (the connections were "
        "spread evenly over the workers, see Method). Latencies in ms, measured by the client. With one "
        "client only one request is in flight, so only one core hashes at a time: there the ratio cannot "
        f"pass 1/{facts.cores} = {1 / facts.cores:.2f} however fast the server is.",
        "",
        "| Server | DB | Clients | Sign-ups | Sign-ups/s | Limit hashes/s (before / after) | Ratio | p50 "
        "| p95 | p99 | Errors | CPU ms per sign-up: server / database / load generator | Worker CPU split |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for run in _ordered(runs):
        load = run.load
        limit = run.limit.hashes_per_s if run.limit else math.nan
        ratio = load.throughput / limit if limit else math.nan
        ratio_text = f"{ratio:.2f}"
        if load.concurrency == 64 and run.server != PEER:
            ratio_text = f"**{ratio_text}**"
        lines.append(
            f"| {run.server} | {db_name(run.backend)} | {load.concurrency} | {load.sent} "
            f"| {load.throughput:.1f} | {limit:.1f}{_readings(run)} | {ratio_text} | {pct(load, 50)} "
            f"| {pct(load, 95)} | {pct(load, 99)} | {_errors(run)} | {_cpu_split(run)} "
            f"| {_worker_split(run)} |"
        )
    return [*lines, ""]


def _gap(facts: Facts, runs: list[Run]) -> list[str]:
    """What the distance from the limit is made of, from the CPU accounting of the 64-client runs."""
    parts: list[str] = []
    for run in _ordered(runs):
        if run.load.concurrency != max(r.load.concurrency for r in runs) or run.cpu is None:
            continue
        if run.limit is None or not run.load.sent or not run.load.throughput:
            continue
        per = 1000 / run.load.sent
        budget = facts.cores * 1000 / run.load.throughput  # core-ms the machine spent per sign-up
        hash_ms = run.limit.cpu_ms_per_hash
        server = run.cpu.server_s * per
        database = (run.cpu.database_s or 0.0) * per
        generator = run.load.client_cpu_s * per
        idle = budget - server - database - generator
        pieces = [
            f"the hash {hash_ms:.1f} ms ({hash_ms / budget:.0%})",
            f"the rest of the server's work {server - hash_ms:.1f} ms ({(server - hash_ms) / budget:.0%})",
        ]
        if run.cpu.database_s is not None:
            pieces.append(f"the PostgreSQL backends {database:.1f} ms ({database / budget:.0%})")
        pieces.append(f"the load generator {generator:.1f} ms ({generator / budget:.0%})")
        pieces.append(f"cores left idle or taken by other processes {idle:.1f} ms ({idle / budget:.0%})")
        parts.append(
            f"{run.server} on {db_name(run.backend)} at {run.load.concurrency} clients: each sign-up took "
            f"{budget:.1f} ms of the {facts.cores} cores' time ({facts.cores} x wall time / sign-ups), of "
            "which " + ", ".join(pieces) + "."
        )
    if not parts:
        return []
    return [
        "**What the gap to the limit is made of.** A sign-up can go no faster than its hash: the limit "
        "spends nothing but hashes on every core. What a sign-up spends besides the hash, on the same "
        "cores, is the gap. Per sign-up (CPU time from `/proc`; the hash's CPU time is the limit "
        "processes' own per hash):",
        "",
        *(f"- {part}" for part in parts),
        "",
        "The hash's share of the cores' time is the ratio above (give or take the noise between the two "
        "measurements); the server's other work (HTTP parsing, validation, the uniqueness read, the "
        "insert, JSON, the log line, handing the hash to the hashing processes) and the load generator, "
        "which shares the cores here but would not in production, make up the rest.",
        "",
    ]


def _side_by_side(runs: list[Run]) -> list[str]:
    lines = [
        f"## Side by side with {PEER}: sign-ups",
        "",
        f"The same bodies at the same concurrency: Keyhall's `POST /api/v3/signup` and {PEER}'s "
        "`POST /auth/register` (bench/peer/app.py, its documented SQLAlchemy setup with the JWT "
        "backend, argon2id at Keyhall's parameters), both under uvicorn with 2 workers, each against a "
        "fresh database, the two taking turns at each concurrency. Errors count every answer other than "
        "success (200 envelope for Keyhall, HTTP 201 for the peer; the peer's exceptions are quoted in "
        "its sections below). Other work on the shared machine moves every figure, so the second ratio "
        "divides each server's sign-ups/s by the argon2 limit read around its own load first. "
        "FastAPI-Users hashes inside the request's coroutine (its UserManager calls pwdlib, which is "
        "synchronous), so a worker's event loop serves nobody else during a hash; Keyhall hands the "
        "hash to a bounded thread pool. Latencies p50 / p95 / p99 in ms.",
        "",
        f"| DB | Clients | Keyhall sign-ups/s | Keyhall errors | {PEER} sign-ups/s | {PEER} errors "
        f"| Keyhall / {PEER} | Same, each over its own limit reading | Keyhall latency | {PEER} latency |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for backend, concurrency, ours, theirs in _pairs(runs):
        ratio = ours.load.throughput / theirs.load.throughput if theirs.load.throughput else math.nan
        fair = _over_limit(ours) / _over_limit(theirs)
        lines.append(
            f"| {db_name(backend)} | {concurrency} | {ours.load.throughput:.1f} | {_errors(ours)} "
            f"| {theirs.load.throughput:.1f} | {_errors(theirs)} | {ratio:.2f}x | {fair:.2f}x "
            f"| {_latency(ours.load)} | {_latency(theirs.load)} |"
        )
    return [*lines, ""]


def _reads_table(runs: list[Run]) -> list[str]:
    lines = [
        f"## Reads with a valid token: Keyhall's get-profile against {PEER}'s /users/me",
        "",
        f"`GET /api/v3/get-profile` (Keyhall) and `GET /users/me` ({PEER}), each with a valid bearer "
        "token of a signed-in user (the users' tokens in turn). Both check the JWT; the peer reads the user "
        "from the database every time, Keyhall checks the token's revocation and the user's status too, "
        "in one statement the first time, then answers from its user cache until the database says the "
        "user changed (`KEYHALL_USER_CACHE_SIZE`, docs/configuration.md). The *cache off* columns are a "
        "second Keyhall server with `KEYHALL_USER_CACHE_SIZE=0`, which reads the database every time as "
        f"the peer does. Target: Keyhall >= {READS_TARGET:.0f}x the peer's reads/s. Latencies p50 / p95 / "
        "p99 in ms.",
        "",
        f"| DB | Clients | Keyhall reads/s | Keyhall errors | {PEER} reads/s | {PEER} errors "
        f"| Keyhall / {PEER} | Cache off reads/s | Cache off / {PEER} | Keyhall latency "
        f"| {PEER} latency | Load generator CPU ms per read |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|",
    ]
    uncached = {(r.backend, r.load.concurrency): r for r in runs if r.server == UNCACHED}
    below: list[str] = []
    for backend, concurrency, ours, theirs in _pairs(runs):
        ratio = ours.load.throughput / theirs.load.throughput if theirs.load.throughput else math.nan
        mark = "" if ratio >= READS_TARGET else " (below target)"
        if ratio < READS_TARGET and ours.cpu is not None and theirs.cpu is not None and concurrency > 1:
            below.append(
                f"{db_name(backend)} at {concurrency} clients {_server_ms(ours):.2f} ms against "
                f"{_server_ms(theirs):.2f} ms"
            )
        off = uncached.get((backend, concurrency))
        off_rate, off_ratio = "-", "-"
        if off is not None:
            off_rate = f"{off.load.throughput:.0f}" + (f" ({_errors(off)} errors)" if _errors(off) else "")
            if theirs.load.throughput:
                off_ratio = f"{off.load.throughput / theirs.load.throughput:.2f}x"
        lines.append(
            f"| {db_name(backend)} | {concurrency} | {ours.load.throughput:.0f} | {_errors(ours)} "
            f"| {theirs.load.throughput:.0f} | {_errors(theirs)} | **{ratio:.2f}x**{mark} "
            f"| {off_rate} | {off_ratio} "
            f"| {_latency(ours.load)} | {_latency(theirs.load)} "
            f"| {_client_ms(ours.load):.2f} / {_client_ms(theirs.load):.2f} |"
        )
    lines.append("")
    if below:
        lines += [
            "Keyhall's reads are below the target. Server CPU per read (both workers and the PostgreSQL "
            "backends, from `/proc`), "
            f"Keyhall against {PEER}: {'; '.join(below)}; with the cores busy, reads/s follow that CPU. "
            "Where a Keyhall worker's time goes: [docs/profiling.md](profiling.md).",
            "",
        ]
    return lines


def _million_table(runs: list[Run], results: list[ScenarioResult]) -> list[str]:
    notes = [n for r in results if r.name == "million-users" for n in r.notes if n.strip()]
    lines = [
        "## Sign-up latency with 1,000,000 users stored",
        "",
        "Sign-ups one at a time, alternating between a server on an empty database and one on a "
        "database bulk-loaded with the users (million-users below says how). Ratio = loaded / empty "
        f"(target: within {MILLION_TARGET - 1:.0%}, i.e. <= {MILLION_TARGET:.2f}). Latencies in ms.",
        "",
        "| DB | Users stored | Sign-ups each | Empty p50 / p95 / p99 | Loaded p50 / p95 / p99 "
        "| Ratio p50 | Ratio p95 | Ratio p99 | Errors |",
        "|---|--:|--:|---|---|--:|--:|--:|--:|",
    ]
    by_backend: dict[str, dict[str, Run]] = {}
    for run in runs:
        by_backend.setdefault(run.backend, {})[run.kind] = run
    for backend, pair in by_backend.items():
        empty, full = pair.get("empty"), pair.get("million")
        if empty is None or full is None:
            continue
        stored = _stored(full)
        ratios = [full.load.percentile_ms(p) / empty.load.percentile_ms(p) for p in (50, 95, 99)]
        lines.append(
            f"| {db_name(backend)} | {stored} | {full.load.sent} | {_latency(empty.load)} "
            f"| {_latency(full.load)} | **{ratios[0]:.3f}** | {ratios[1]:.3f} | {ratios[2]:.3f} "
            f"| {_errors(empty) + _errors(full)} |"
        )
    return [*lines, "", *notes, ""]


# --- helpers -------------------------------------------------------------------------------------------


def _ordered(runs: list[Run]) -> list[Run]:
    order = {"sqlite": 0, "postgres": 1}
    return sorted(runs, key=lambda r: (r.server == PEER, order.get(r.backend, 9), r.load.concurrency))


def _pairs(runs: list[Run]) -> list[tuple[str, int, Run, Run]]:
    ours = {(r.backend, r.load.concurrency): r for r in runs if r.server == "Keyhall"}
    theirs = {(r.backend, r.load.concurrency): r for r in runs if r.server == PEER}
    keys = sorted(set(ours) & set(theirs), key=lambda k: ({"sqlite": 0}.get(k[0], 1), k[1]))
    return [(b, c, ours[(b, c)], theirs[(b, c)]) for b, c in keys]


def _readings(run: Run) -> str:
    if len(run.limit_readings) < 2:
        return ""
    return " (" + " / ".join(f"{r.hashes_per_s:.0f}" for r in run.limit_readings) + ")"


def _over_limit(run: Run) -> float:
    if run.limit is None or not run.limit.hashes_per_s:
        return math.nan
    return run.load.throughput / run.limit.hashes_per_s


def _errors(run: Run) -> int:
    return run.load.unexpected(run.expected) + run.load.not_sent


def _stored(run: Run) -> str:
    for check in run.checks:
        if check.name.startswith("users stored"):
            return check.detail.split(" users", 1)[0]
    return "?"


def _cpu_split(run: Run) -> str:
    if run.cpu is None or not run.load.sent:
        return "-"
    per = 1000 / run.load.sent
    database = "-" if run.cpu.database_s is None else f"{run.cpu.database_s * per:.1f}"
    return f"{run.cpu.server_s * per:.1f} / {database} / {run.load.client_cpu_s * per:.2f}"


def _worker_split(run: Run) -> str:
    workers = run.cpu.workers() if run.cpu else {}
    total = sum(workers.values())
    if total <= 0:
        return "-"
    shares = sorted((s / total for s in workers.values()), reverse=True)
    connections = "/".join(str(n) for n in sorted(run.split.values(), reverse=True)) if run.split else "?"
    return f"{'/'.join(f'{x:.0%}' for x in shares)} ({connections} connections)"


def _latency(load: LoadResult) -> str:
    return f"{pct(load, 50)} / {pct(load, 95)} / {pct(load, 99)}"


def _server_ms(run: Run) -> float:
    if run.cpu is None or not run.load.sent:
        return math.nan
    return (run.cpu.server_s + (run.cpu.database_s or 0.0)) * 1000 / run.load.sent


def _client_ms(load: LoadResult) -> float:
    return load.client_cpu_s * 1000 / load.sent if load.sent else math.nan


def pct(load: LoadResult, p: float) -> str:
    value = load.percentile_ms(p)
    return "-" if math.isnan(value) else f"{value:.1f}"


def db_name(backend: str) -> str:
    return {"sqlite": "SQLite", "postgres": "PostgreSQL"}.get(backend, backend)
