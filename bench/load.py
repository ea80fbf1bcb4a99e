"""The load generator: POST JSON bodies to a Keyhall server at a fixed concurrency and time each answer.

One ``httpx.AsyncClient`` is shared by all workers, so connections are opened once and reused
(keep-alive). Each worker takes the next body, sends it, waits for the whole answer and records how
long it took and what the envelope said. A load is bounded twice: by its list of bodies and by a
deadline after which no new request starts (the ones not sent are counted, never hidden).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

SIGNUP_PATH = "/api/v3/signup"


@dataclass(frozen=True)
class Outcome:
    """One request: its latency and what came back, as a label such as ``200`` or ``409/2026``."""

    latency_s: float
    label: str


@dataclass
class LoadResult:
    """What one load (or several, merged) produced."""

    planned: int
    concurrency: int
    wall_s: float
    outcomes: list[Outcome] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def not_sent(self) -> int:
        """Requests the deadline stopped before they started."""
        return self.planned - self.sent

    @property
    def throughput(self) -> float:
        """Answers per second of wall time (every answer counts, whatever it said)."""
        return self.sent / self.wall_s if self.wall_s > 0 else 0.0

    def latencies_ms(self) -> list[float]:
        return sorted(o.latency_s * 1000 for o in self.outcomes)

    def percentile_ms(self, pct: float) -> float:
        return percentile(self.latencies_ms(), pct)

    def counts(self) -> Counter[str]:
        return Counter(o.label for o in self.outcomes)

    def unexpected(self, expected: frozenset[str]) -> int:
        return sum(n for label, n in self.counts().items() if label not in expected)

    @classmethod
    def merge(cls, results: Sequence[LoadResult]) -> LoadResult:
        """Several loads run one after the other, as one (wall times add up)."""
        return cls(
            planned=sum(r.planned for r in results),
            concurrency=max((r.concurrency for r in results), default=0),
            wall_s=sum(r.wall_s for r in results),
            outcomes=[o for r in results for o in r.outcomes],
            client_cpu_s=sum(r.client_cpu_s for r in results),
        )


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (p100 is the maximum); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def label_of(response: httpx.Response) -> str:
    """``statusCode`` or ``statusCode/apiCode`` of a Keyhall envelope; anything else says what it was."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return "HTTP 200, not JSON"
    if not isinstance(body, dict) or "statusCode" not in body:
        return "HTTP 200, no envelope"
    status = body["statusCode"]
    api_code = body.get("apiCode")
    return f"{status}" if api_code is None else f"{status}/{api_code}"


def envelope_label(status_code: object, api_code: object) -> str:
    """The label of an envelope given its two codes (the server log records them the same way)."""
    return f"{status_code}" if api_code is None else f"{status_code}/{api_code}"


@asynccontextmanager
async def open_client(
    base_url: str, app_id: str, connections: int, timeout_s: float
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for one server and app, keeping up to ``connections`` connections alive."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"x-genauth-app-id": app_id},
        timeout=httpx.Timeout(timeout_s),
        limits=limits,
    ) as client:
        yield client


async def run_load(
    client: httpx.AsyncClient,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int,
    deadline_s: float,
    path: str = SIGNUP_PATH,
) -> LoadResult:
    """Send every body (unless the deadline passes first) with ``concurrency`` requests in flight."""
    outcomes: list[Outcome] = []
    queue = iter(range(len(bodies)))
    start = time.perf_counter()
    stop_at = start + deadline_s
    cpu_start = time.process_time()

    async def worker() -> None:
        for index in queue:
            if time.perf_counter() > stop_at:
                return
            sent = time.perf_counter()
            try:
                response = await client.post(path, json=bodies[index])
                label = label_of(response)
            except httpx.HTTPError as exc:
                label = f"client error: {type(exc).__name__}"
            outcomes.append(Outcome(time.perf_counter() - sent, label))

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return LoadResult(
        planned=len(bodies),
        concurrency=concurrency,
        wall_s=time.perf_counter() - start,
        outcomes=outcomes,
        client_cpu_s=time.process_time() - cpu_start,
    )
