"""The load generator: pre-encoded HTTP/1.1 requests to a server at a fixed concurrency, each answer timed.

It shares the machine's cores with the server it measures, so its own CPU per request is part of every
figure: that is why it is not httpx. httpx (with its pool, its request and response models, and JSON
encoding per request) cost about 1.9 ms of CPU per request here, a tenth of an argon2 hash, taken from
the cores the server needs. :class:`Connections` is a deliberately minimal keep-alive HTTP/1.1 client on
asyncio streams: every request is encoded to bytes before the clock starts, an answer is read as its
head plus ``content-length`` bytes (or chunks), and nothing else happens per request but recording its
latency and label. It only has to talk to uvicorn on 127.0.0.1, which it was checked against; for
anything else use httpx (``open_client``, kept for the sequential scenarios).

Each worker owns one connection and sends its next request as soon as its previous answer is read. The
connections are opened one at a time, a few milliseconds apart, each answering one request before the
next opens, so that the server's workers (which accept from one shared socket) each get a share
instead of one worker accepting a whole burst. A load is bounded twice: by its list of requests and by
a deadline after which no new request starts (the ones not sent are counted, never hidden).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.sockets import peer_port_owners

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


Labeler = Callable[[int, bytes], str]


def envelope_of(status: int, body: bytes) -> str:
    """The label of a Keyhall answer: ``statusCode`` or ``statusCode/apiCode`` of its envelope."""
    if status != 200:
        return f"HTTP {status}"
    try:
        envelope = json.loads(body)
    except ValueError:
        return "HTTP 200, not JSON"
    if not isinstance(envelope, dict) or "statusCode" not in envelope:
        return "HTTP 200, no envelope"
    return envelope_label(envelope["statusCode"], envelope.get("apiCode"))


def http_status_of(status: int, body: bytes) -> str:
    """The label of a plain HTTP API's answer (the peer's): its HTTP status."""
    return f"HTTP {status}"


def encode_request(
    method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> bytes:
    """One whole HTTP/1.1 request, ready to write (keep-alive is HTTP/1.1's default)."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def encode_json(method: str, path: str, host: str, headers: dict[str, str], payload: Any) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return encode_request(method, path, host, {**headers, "content-type": "application/json"}, body)


class ProtocolError(Exception):
    """The server's answer was not HTTP/1.1 this client understands."""


class Connection:
    """One keep-alive HTTP/1.1 connection; :meth:`exchange` writes a request and reads its answer."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.opened = 0  # how many times a socket was opened for it (1 unless the server closed one)
        self.local_port = 0

    async def connect(self) -> None:
        self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        self.local_port = int(self._writer.get_extra_info("sockname")[1])

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``, return the answer's status and body. A connection the server closed while
        idle (keep-alive timeout) is reopened and the request sent once more: nothing was read then."""
        if self._writer is None:
            await self.connect()
        try:
            return await asyncio.wait_for(self._exchange(request), self.timeout_s)
        except _ClosedIdle:
            await self.connect()
            return await asyncio.wait_for(self._exchange(request), self.timeout_s)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _ClosedIdle from exc
            raise
        except ConnectionResetError as exc:
            raise _ClosedIdle from exc
        if not head.startswith(b"HTTP/1.1 "):
            raise ProtocolError(head[:40].decode("latin-1"))
        status = int(head[9:12])
        lowered = head.lower()
        at = lowered.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lowered.index(b"\r\n", at + 2)
            body = await self._reader.readexactly(int(lowered[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lowered:
            body = await self._read_chunks()
        else:
            body = b""
        if b"\r\nconnection: close" in lowered:
            self.close()
        return status, body

    async def _read_chunks(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class _ClosedIdle(Exception):
    pass


class Connections:
    """``count`` connections to one server, spread over its worker processes (see the module doc)."""

    def __init__(self, base_url: str, count: int, timeout_s: float) -> None:
        address = base_url.removeprefix("http://").rstrip("/")
        host, _, port = address.partition(":")
        self.host_header = address
        self._host, self._port, self._timeout_s = host, int(port or 80), timeout_s
        self.count = max(1, count)
        self.all: list[Connection] = []
        self.split: dict[int, int] = {}  # worker pid -> connections it holds, when known

    async def open(
        self,
        probe: bytes | None = None,
        worker_pids: Callable[[], Sequence[int]] | None = None,
        attempts: int = 4,
    ) -> None:
        """Open the connections, each answering ``probe`` once (so that a worker has accepted it).

        With ``worker_pids`` (the server's worker processes) more are opened than needed, a batch at a
        time, until every worker holds its even share; the even selection is kept, the rest closed.
        """
        pids = list(worker_pids()) if worker_pids is not None else []
        if len(pids) < 2:
            self.all = [await self._open_one(probe) for _ in range(self.count)]
            return
        share = -(-self.count // len(pids))  # ceiling: one worker may get one more than the other
        by_owner: dict[int, list[Connection]] = {pid: [] for pid in pids}
        spare: list[Connection] = []
        for _ in range(attempts):
            batch = [await self._open_one(probe) for _ in range(self.count)]
            owners = peer_port_owners(pids)
            for connection in batch:
                owner = owners.get(connection.local_port)
                if owner in by_owner and len(by_owner[owner]) < share:
                    by_owner[owner].append(connection)
                else:
                    spare.append(connection)
            if all(len(held) >= share for held in by_owner.values()):
                break
        chosen: list[Connection] = []
        queues = [held for held in by_owner.values() if held]
        while len(chosen) < self.count and queues:  # round-robin over the workers
            for held in queues:
                if held and len(chosen) < self.count:
                    chosen.append(held.pop(0))
            queues = [held for held in queues if held]
        chosen += spare[: self.count - len(chosen)]  # a worker short of its share: others make up
        kept = {id(c) for c in chosen}
        for connection in [*spare, *(c for held in by_owner.values() for c in held)]:
            if id(connection) not in kept:
                connection.close()
        owners = peer_port_owners(pids)
        self.all = chosen
        self.split = dict(Counter(owners.get(c.local_port, 0) for c in chosen))

    async def _open_one(self, probe: bytes | None) -> Connection:
        connection = Connection(self._host, self._port, self._timeout_s)
        await connection.connect()
        if probe is not None:
            await connection.exchange(probe)
        return connection

    def close(self) -> None:
        for connection in self.all:
            connection.close()

    @property
    def reopened(self) -> int:
        """Sockets opened beyond one per connection (the server closed idle or finished ones)."""
        return sum(max(0, c.opened - 1) for c in self.all)


@asynccontextmanager
async def connections(
    base_url: str,
    count: int,
    timeout_s: float,
    probe: bytes | None = None,
    worker_pids: Callable[[], Sequence[int]] | None = None,
) -> AsyncIterator[Connections]:
    pool = Connections(base_url, count, timeout_s)
    try:
        await pool.open(probe, worker_pids)
        yield pool
    finally:
        pool.close()


async def run_load(
    pool: Connections,
    requests: Sequence[bytes],
    *,
    concurrency: int,
    deadline_s: float,
    label: Labeler = envelope_of,
) -> LoadResult:
    """Send every request (unless the deadline passes first), ``concurrency`` in flight, one a connection."""
    outcomes: list[Outcome] = []
    queue = iter(range(len(requests)))
    workers = pool.all[: max(1, concurrency)]
    if len(workers) < concurrency:
        raise ValueError(f"{concurrency} workers need as many connections, not {len(pool.all)}")
    start = time.perf_counter()
    stop_at = start + deadline_s
    cpu_start = time.process_time()

    async def worker(connection: Connection) -> None:
        for index in queue:
            if time.perf_counter() > stop_at:
                return
            sent = time.perf_counter()
            try:
                status, body = await connection.exchange(requests[index])
                text = label(status, body)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                text = f"client error: {type(exc).__name__}"
                connection.close()
            outcomes.append(Outcome(time.perf_counter() - sent, text))

    await asyncio.gather(*(worker(connection) for connection in workers))
    return LoadResult(
        planned=len(requests),
        concurrency=concurrency,
        wall_s=time.perf_counter() - start,
        outcomes=outcomes,
        client_cpu_s=time.process_time() - cpu_start,
    )
