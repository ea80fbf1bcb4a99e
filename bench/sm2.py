"""The sm2-signup scenario: what SM2 password transport encryption adds to a sign-up.

Against one ``keyhall serve`` on SQLite, sequential sign-ups (one request in flight) alternate between a
plain password and one the client encrypted with SM2 (``keyhall._crypto.sm2.encrypt`` under the key
from ``GET /api/v3/system``, ``options.passwordEncryptType`` ``sm2``), so both kinds see the same
machine load. The ciphertexts are made before the clock starts: the latency is the server's cost. The
figure that matters is the ratio of the two median latencies (the target is at most 1.15).

In-process, without a server, the same run times one SM2 decryption by keyhall and by gmssl (the test
dependency keyhall's SM2 replaced), and one argon2id hash at the defaults for scale.

``python -m bench.sm2`` prints the in-process figures alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.load import SIGNUP_PATH, LoadResult, Outcome, label_of, open_client
from bench.scenarios import (
    OK,
    PASSWORD,
    REQUEST_TIMEOUT_S,
    Check,
    LogSummary,
    Run,
    ScenarioResult,
    Sizes,
    _common_checks,
    _Measured,
    _settle_log,
    email_body,
    keyhall_server,
    read_log,
)
from keyhall._crypto import sm2, sm3
from keyhall.server.crypto.passwords import Argon2Params
from tests.support.servers import RunningServer

MAX_RATIO = 1.15
WARMUP_EACH = 8


# --- in-process figures --------------------------------------------------------------------------------


@dataclass
class Timing:
    """Samples of one call: wall time and this process's CPU time, in ms."""

    label: str
    call: Callable[[], object]
    wall_ms: list[float] = dataclasses.field(default_factory=list)
    cpu_ms: list[float] = dataclasses.field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu_ms)

    def sample(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.call()
        self.cpu_ms.append((time.process_time() - cpu) * 1000)
        self.wall_ms.append((time.perf_counter() - wall) * 1000)


def decrypt_timings(samples: int) -> list[Timing]:
    """keyhall's SM2 decryption, gmssl's and one argon2id hash, ``samples`` each, taken round-robin so
    that all of them see the same machine load (the medians are the figures; the minimum shows what a
    quiet moment allows)."""
    import argon2

    private, public = sm2.generate_keypair()
    message = PASSWORD.encode()
    ciphertext = sm2.encrypt(public, message)
    timings = [
        Timing(
            f"keyhall SM2 decrypt (SM3 from {sm3.IMPLEMENTATION})", lambda: sm2.decrypt(private, ciphertext)
        )
    ]
    if sm3.IMPLEMENTATION != "python":
        timings.append(
            Timing(
                "keyhall SM2 decrypt (pure-Python SM3)",
                functools.partial(_python_sm3_decrypt, private, ciphertext),
            )
        )
    try:
        from gmssl.sm2 import CryptSM2
    except ImportError:  # a test dependency; the figure is simply left out without it
        pass
    else:
        crypt = CryptSM2(private_key=private, public_key=public[2:], mode=1)
        crypt.public_key = public[2:]  # its lstrip("04") could eat leading digits of X
        raw = bytes.fromhex(ciphertext)
        assert crypt.decrypt(raw) == message
        timings.append(Timing("gmssl 3.2.2 SM2 decrypt", lambda: crypt.decrypt(raw)))
    params = Argon2Params()
    hasher = argon2.PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        type=argon2.Type.ID,
    )
    label = f"argon2id hash (t={params.time_cost}, m={params.memory_kib} KiB, p={params.parallelism})"
    timings.append(Timing(label, lambda: hasher.hash(PASSWORD)))
    for timing in timings:
        timing.call()  # warm-up: first-use tables, allocations
    for _ in range(samples):
        for timing in timings:
            timing.sample()
    return timings


def _python_sm3_decrypt(private: str, ciphertext: str) -> bytes:
    """``sm2.decrypt`` as it runs where Python's OpenSSL lacks SM3: the module's two SM3 names are
    swapped for the pure-Python ones for the call (a measurement only; nothing else runs meanwhile)."""
    saved = sm2.sm3, sm2.kdf
    sm2.sm3, sm2.kdf = sm3.python_sm3, sm3.python_kdf
    try:
        return sm2.decrypt(private, ciphertext)
    finally:
        sm2.sm3, sm2.kdf = saved


# --- the scenario --------------------------------------------------------------------------------------


def run(sizes: Sizes, workdir: Path, result: ScenarioResult) -> None:
    each = max(1, sizes.sm2_each)
    tag = uuid.uuid4().hex[:8]
    with keyhall_server("sqlite", workdir) as server:
        system = httpx.get(
            f"{server.base_url}/api/v3/system", headers={"x-genauth-app-id": server.app_id}, timeout=10
        ).json()
        public_key = system["sm2"]["publicKey"]

        def body(kind: str, name: str) -> dict[str, Any]:
            plain = email_body(f"{name}.{tag}@example.com")
            if kind == "plain":
                return plain
            plain["passwordPayload"]["password"] = sm2.encrypt(public_key, PASSWORD.encode())
            return {**plain, "options": {"passwordEncryptType": "sm2"}}

        kinds = ("plain", "sm2")
        warmup = [(k, body(k, f"warm-{k}-{i}")) for i in range(WARMUP_EACH) for k in kinds]
        measured = [(k, body(k, f"user-{k}-{i}")) for i in range(each) for k in kinds]
        loads, warm, offset = asyncio.run(_sequential(server, warmup, measured))
        log = read_log(server, offset)
        merged = LoadResult.merge([loads["plain"], loads["sm2"]])
        checks = _common_checks(server, _Measured(merged, warm, None, offset), frozenset({OK}), log)

    plain, encrypted = loads["plain"], loads["sm2"]
    ratio = encrypted.percentile_ms(50) / plain.percentile_ms(50)
    ratio_check = Check(
        f"median sm2 / median plain <= {MAX_RATIO}",
        ratio <= MAX_RATIO,
        f"{encrypted.percentile_ms(50):.1f} / {plain.percentile_ms(50):.1f} ms = {ratio:.3f}",
    )
    answered = Check(
        "every sm2 answer 200",
        encrypted.unexpected(frozenset({OK})) == 0 and encrypted.not_sent == 0,
        f"{dict(encrypted.counts())}",
    )
    # The log's per-request durations cannot be told apart by kind, so they are left out of both rows.
    shared_log = dataclasses.replace(log, durations_ms=[])
    result.runs.append(Run("SQLite, plain", plain, frozenset({OK}), WARMUP_EACH, None, shared_log, checks))
    result.runs.append(
        Run(
            "SQLite, sm2",
            encrypted,
            frozenset({OK}),
            WARMUP_EACH,
            None,
            LogSummary(),
            [answered, ratio_check],
        )
    )
    timings = decrypt_timings(samples=100 if each >= 100 else 20)
    result.notes.extend(_notes(plain, encrypted, ratio, timings))


async def _sequential(
    server: RunningServer,
    warmup: list[tuple[str, dict[str, Any]]],
    measured: list[tuple[str, dict[str, Any]]],
) -> tuple[dict[str, LoadResult], LoadResult, int]:
    """Send the bodies one at a time, in order; the measured ones timed and sorted by kind."""
    async with open_client(server.base_url, server.app_id, 1, REQUEST_TIMEOUT_S) as client:
        warm_outcomes = [await _post(client, b) for _, b in warmup]
        offset = await _settle_log(server)
        outcomes: dict[str, list[Outcome]] = {"plain": [], "sm2": []}
        for kind, b in measured:
            outcomes[kind].append(await _post(client, b))
        await _settle_log(server)
    warm = LoadResult(len(warmup), 1, sum(o.latency_s for o in warm_outcomes), warm_outcomes)
    loads = {
        kind: LoadResult(
            planned=len(found),
            concurrency=1,
            wall_s=sum(o.latency_s for o in found),
            outcomes=found,
        )
        for kind, found in outcomes.items()
    }
    return loads, warm, offset


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> Outcome:
    sent = time.perf_counter()
    try:
        label = label_of(await client.post(SIGNUP_PATH, json=body))
    except httpx.HTTPError as exc:
        label = f"client error: {type(exc).__name__}"
    return Outcome(time.perf_counter() - sent, label)


def _notes(plain: LoadResult, encrypted: LoadResult, ratio: float, timings: list[Timing]) -> list[str]:
    p50_plain, p50_sm2 = plain.percentile_ms(50), encrypted.percentile_ms(50)
    lines = [
        f"- **Median latency: plain {p50_plain:.1f} ms, sm2 {p50_sm2:.1f} ms; sm2 / plain = {ratio:.3f}** "
        f"(target <= {MAX_RATIO}; {p50_sm2 - p50_plain:+.1f} ms), {plain.sent} + {encrypted.sent} "
        "sign-ups interleaved",
        "",
        "| In-process (no server), round-robin | Samples | Median ms | Min ms | Median CPU ms |",
        "|---|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {t.label} | {len(t.wall_ms)} | {t.median_ms:.2f} | {min(t.wall_ms):.2f} | {t.median_cpu_ms:.2f} |"
        for t in timings
    ]
    ours = timings[0].median_ms
    others = {t.label: t.median_ms for t in timings[1:]}
    gmssl = next((ms for label, ms in others.items() if label.startswith("gmssl")), None)
    argon = next(ms for label, ms in others.items() if label.startswith("argon2id"))
    summary = f"keyhall's decryption is {ours / argon:.0%} of one argon2id hash"
    if gmssl is not None:
        summary += f"; gmssl's was {gmssl / argon:.0%}, {gmssl / ours:.1f}x keyhall's"
    return [*lines, "", f"- {summary}.", ""]


def main() -> None:
    for t in decrypt_timings(samples=100):
        print(
            f"{t.label}: median {t.median_ms:.2f} ms, min {min(t.wall_ms):.2f} ms, "
            f"median CPU {t.median_cpu_ms:.2f} ms"
        )


if __name__ == "__main__":
    main()
