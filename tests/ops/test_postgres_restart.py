"""PostgreSQL restarted under a sign-up load: 503 envelopes during the outage, recovery without a restart.

The database is a private cluster (tests/support/private_postgres.py), never the shared server. A two-worker
`keyhall serve` runs on it with ``CONCURRENCY`` clients signing up; once the load is flowing the cluster is
stopped with ``pg_ctl stop -m immediate`` (every PostgreSQL process quits at once, as in a crash), the
clients keep sending for ``OUTAGE_S``, then the cluster is started again and the same server must serve
sign-ups again by itself.

"No hang" is checked as a correctness bound, not a speed: every answer in the outage must be the database's
503 envelope (not the request-timeout one) and arrive within the server's own request timeout, which this
test sets to ``REQUEST_TIMEOUT_S``. A request that hung on a dead connection until the timeout cut it
would fail either check.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyhall.server.messages import message_for
from tests.http.test_signup import STRONG
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.servers import RunningServer, start_server

CONCURRENCY = 8
REQUEST_TIMEOUT_S = 10.0  # the server's KEYHALL_REQUEST_TIMEOUT_S in this test
CLIENT_TIMEOUT_S = 3 * REQUEST_TIMEOUT_S  # longer, so that a server-side hang shows as a missing answer
SUCCESSES_BEFORE_STOP = 12
OUTAGE_S = 4.0
RECOVERY_WAIT_S = 60.0
DATABASE_MESSAGE = message_for(
    "service_unavailable", "en-US", reason="the database cannot be reached; retry later"
)


@dataclass
class Attempt:
    index: int
    email: str
    started: float
    finished: float
    http_status: int | None = None
    body: dict[str, Any] | None = None
    failure: str | None = None  # the client got no HTTP answer (connection cut, client timeout)

    @property
    def status_code(self) -> int | None:
        return None if self.body is None else self.body.get("statusCode")

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class Timeline:
    stop_began: float = 0.0
    stopped: float = 0.0
    start_began: float = 0.0
    started: float = 0.0


def _body(email: str, index: int) -> dict[str, Any]:
    return {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": STRONG},
        "profile": {"nickname": f"n{index}", "customData": {"index": index}},
    }


async def _until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds:g} s")
        await asyncio.sleep(0.05)


async def _run_load(
    server: RunningServer, cluster: PrivatePostgres, tag: str
) -> tuple[list[Attempt], Timeline, list[int], list[int]]:
    """Sign up until recovered; stop and restart the cluster on the way. Attempts, timeline, /readyz codes."""
    attempts: list[Attempt] = []
    timeline = Timeline()
    ready_in_outage: list[int] = []
    ready_after: list[int] = []
    counter = iter(range(1_000_000))
    done = asyncio.Event()

    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers={"x-genauth-app-id": server.app_id},
        timeout=CLIENT_TIMEOUT_S,
        limits=httpx.Limits(max_connections=CONCURRENCY + 1),
    ) as http:

        async def client() -> None:
            while not done.is_set():
                index = next(counter)
                email = f"pg{index}.{tag}@example.com"
                attempt = Attempt(index, email, time.monotonic(), 0.0)
                try:
                    response = await http.post("/api/v3/signup", json=_body(email, index))
                    attempt.http_status = response.status_code
                    attempt.body = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    attempt.failure = f"{type(exc).__name__}: {exc}"
                attempt.finished = time.monotonic()
                attempts.append(attempt)
                if attempt.status_code != 200:
                    await asyncio.sleep(0.05)  # a failing load would otherwise spin on two shared cores

        def successes_since(moment: float) -> int:
            return sum(1 for a in attempts if a.status_code == 200 and a.started >= moment)

        async def readyz() -> int:
            return (await http.get("/readyz")).status_code

        async def conductor() -> None:
            try:
                await _until(lambda: successes_since(0.0) >= SUCCESSES_BEFORE_STOP, 120, "the first sign-ups")
                timeline.stop_began = time.monotonic()
                await asyncio.to_thread(cluster.stop, "immediate")
                timeline.stopped = time.monotonic()
                while time.monotonic() < timeline.stopped + OUTAGE_S:
                    ready_in_outage.append(await readyz())
                    await asyncio.sleep(0.3)
                timeline.start_began = time.monotonic()
                await asyncio.to_thread(cluster.start)
                timeline.started = time.monotonic()
                # Recovered: sign-ups that began after the start succeed, and the probe says ready.
                await _until(
                    lambda: successes_since(timeline.started) >= CONCURRENCY, RECOVERY_WAIT_S, "recovery"
                )
                deadline = time.monotonic() + RECOVERY_WAIT_S
                while not ready_after or ready_after[-1] != 200:
                    assert time.monotonic() < deadline, f"/readyz still {ready_after[-5:]}"
                    ready_after.append(await readyz())
                    await asyncio.sleep(0.1)
            finally:
                done.set()

        await asyncio.gather(conductor(), *(client() for _ in range(CONCURRENCY)))
    return attempts, timeline, ready_in_outage, ready_after


def _assert_database_envelope(attempt: Attempt) -> None:
    body = attempt.body
    assert attempt.http_status == 200 and body is not None, attempt
    assert body["statusCode"] == 503, attempt
    assert body["message"] == DATABASE_MESSAGE, attempt
    assert "database" in body["message"]
    assert isinstance(body.get("requestId"), str) and body["requestId"], attempt


def test_postgres_restart_mid_load_gives_503s_then_recovers(tmp_path: Path) -> None:
    with private_postgres(tmp_path / "pg") as cluster:
        url = cluster.create_database("keyhall")
        server = start_server(
            "postgres",
            url,
            tmp_path / "server.log",
            workers=2,
            env={"KEYHALL_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S)},
        )
        try:
            tag = uuid.uuid4().hex[:8]
            attempts, timeline, ready_in_outage, ready_after = asyncio.run(_run_load(server, cluster, tag))
            _check(server, attempts, timeline, ready_in_outage, ready_after)
        finally:
            server.stop()
    assert STRONG not in server.log_text()


def acknowledged_after(attempts: list[Attempt], moment: float) -> list[Attempt]:
    return [a for a in attempts if a.status_code == 200 and a.started >= moment]


def _check(
    server: RunningServer,
    attempts: list[Attempt],
    timeline: Timeline,
    ready_in_outage: list[int],
    ready_after: list[int],
) -> None:
    # Every request got an HTTP answer, and it was a success or a 503 envelope: no 500, no cut connection.
    unanswered = [a for a in attempts if a.body is None]
    assert unanswered == [], unanswered[:5]
    assert {a.http_status for a in attempts} == {200}
    assert {a.status_code for a in attempts} <= {200, 503}, [a for a in attempts if a.status_code != 200][:5]

    # In the outage (sent after the stop finished, answered before the start began): the database's 503,
    # within the request timeout.
    outage = [a for a in attempts if a.started >= timeline.stopped and a.finished <= timeline.start_began]
    assert len(outage) >= CONCURRENCY, f"only {len(outage)} requests fell in the outage"
    for attempt in outage:
        _assert_database_envelope(attempt)
        assert attempt.seconds < REQUEST_TIMEOUT_S, attempt
    for attempt in attempts:
        if attempt.status_code == 503:
            _assert_database_envelope(attempt)
        assert attempt.seconds < REQUEST_TIMEOUT_S, attempt  # nothing hung, before, during or after
    assert ready_in_outage and set(ready_in_outage) == {503}, ready_in_outage
    assert ready_after[-1] == 200

    seconds = sorted(a.seconds for a in outage)
    back = min(a.finished for a in acknowledged_after(attempts, timeline.started)) - timeline.started
    print(  # the figures the change was measured with (pytest -s shows them)
        f"\noutage answers: n={len(seconds)} median={statistics.median(seconds) * 1000:.1f} ms "
        f"max={seconds[-1] * 1000:.1f} ms; first success {back:.2f} s after the start"
    )

    # What the database holds: every acknowledged sign-up, whole; nothing of a refused one.
    rows = server.sql(
        "SELECT id, email, email_norm, password_hash, password_security_level, password_last_set_at, "
        "status, nickname, custom_data, created_at FROM users WHERE email_norm LIKE :pattern",
        pattern=f"pg%.{attempts[0].email.split('.', 1)[1]}",
    )
    stored = {row.email: row for row in rows}
    by_email = {a.email: a for a in attempts}
    acknowledged = [a for a in attempts if a.status_code == 200]
    assert len(acknowledged) >= SUCCESSES_BEFORE_STOP + CONCURRENCY
    for attempt in acknowledged:
        assert attempt.email in stored, f"acknowledged sign-up {attempt.email} is missing"
        assert stored[attempt.email].id == attempt.body["data"]["userId"]  # type: ignore[index]
    for email, row in stored.items():  # every row, acknowledged or not, is a whole user
        index = by_email[email].index
        assert row.email_norm == email
        assert row.password_hash and row.password_hash.startswith("$argon2id$")
        assert row.password_security_level is not None and row.password_last_set_at is not None
        assert row.status == "Activated" and row.created_at is not None
        assert row.nickname == f"n{index}"
        custom = row.custom_data if isinstance(row.custom_data, dict) else json.loads(row.custom_data)
        assert custom == {"index": index}
    refused = [a for a in attempts if a.status_code == 503]
    assert refused, "the outage refused nothing"
    for attempt in refused:
        # A request already committing when PostgreSQL died may have committed with its answer lost in the
        # crash (the server cannot know either); a request sent once the cluster was down cannot have.
        if attempt.started >= timeline.stopped:
            assert attempt.email not in stored, f"{attempt.email} was refused with 503 but stored"


# (KEYHALL_DB_TIMEOUT_S, KEYHALL_REQUEST_TIMEOUT_S, the message the frozen requests must get): first the
# database timeouts answer, then, with them set far out, the request timeout alone.
FROZEN_CASES = {
    "db-timeout": (2.0, REQUEST_TIMEOUT_S, DATABASE_MESSAGE),
    "request-timeout": (120.0, 3.0, message_for("request_timeout", "en-US", seconds="3")),
}


@pytest.mark.parametrize("case", list(FROZEN_CASES))
def test_frozen_postgres_gives_503s_within_the_timeouts_then_recovers(tmp_path: Path, case: str) -> None:
    """A database that stops answering without closing anything (SIGSTOP: a partition, a hung host).

    Nothing is refused or reset, so only the server's own bounds (connect, statement and pool timeouts of
    KEYHALL_DB_TIMEOUT_S, then KEYHALL_REQUEST_TIMEOUT_S) stand between a request and a hang. Each frozen
    request must get the 503 of the bound that is meant to end it, within that bound (the next bound is far
    beyond it, and the client waits longer still), and the server must recover after the thaw: a
    cancelled request must not leave a broken connection in the pool.
    """
    db_timeout_s, request_timeout_s, message = FROZEN_CASES[case]
    with private_postgres(tmp_path / "pg") as cluster:
        url = cluster.create_database("keyhall")
        server = start_server(
            "postgres",
            url,
            tmp_path / "server.log",
            workers=2,
            env={
                "KEYHALL_REQUEST_TIMEOUT_S": str(request_timeout_s),
                "KEYHALL_DB_TIMEOUT_S": str(db_timeout_s),
            },
        )
        try:
            attempts = asyncio.run(_frozen(server, cluster, uuid.uuid4().hex[:8], message))
            # Ceilings that prove "no hang", not speed: the database's timeouts answer within the request
            # timeout; a request the request timeout ends is not held long past it by its cancellation.
            ceiling = request_timeout_s if db_timeout_s < request_timeout_s else 2 * request_timeout_s
            assert max(a.seconds for a in attempts) < ceiling, attempts
        finally:
            cluster.thaw()
            server.stop()
        refused = [a for a in attempts if a.status_code == 503]
        stored = {row.email for row in server.sql("SELECT email FROM users")}
        assert not stored & {a.email for a in refused}, "a sign-up refused with 503 was stored"
        assert {a.email for a in attempts if a.status_code == 200} <= stored
    assert STRONG not in server.log_text()


async def _frozen(server: RunningServer, cluster: PrivatePostgres, tag: str, message: str) -> list[Attempt]:
    counter = iter(range(1_000_000))
    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers={"x-genauth-app-id": server.app_id},
        timeout=CLIENT_TIMEOUT_S,
        limits=httpx.Limits(max_connections=CONCURRENCY + 1),
    ) as http:

        async def sign_up() -> Attempt:
            index = next(counter)
            email = f"frozen{index}.{tag}@example.com"
            attempt = Attempt(index, email, time.monotonic(), 0.0)
            try:
                response = await http.post("/api/v3/signup", json=_body(email, index))
                attempt.http_status, attempt.body = response.status_code, response.json()
            except (httpx.HTTPError, ValueError) as exc:
                attempt.failure = f"{type(exc).__name__}: {exc}"
            attempt.finished = time.monotonic()
            return attempt

        async def wave() -> list[Attempt]:
            return list(await asyncio.gather(*(sign_up() for _ in range(CONCURRENCY))))

        before = await wave()  # fills both workers' pools with live connections
        assert {a.status_code for a in before} == {200}, before
        await asyncio.to_thread(cluster.freeze)
        # The first wave finds pooled connections (their ping gets no answer), the second opens new ones
        # (the kernel accepts the connection, PostgreSQL never answers the start-up).
        frozen = await wave() + await wave()
        ready = (await http.get("/readyz")).status_code
        await asyncio.to_thread(cluster.thaw)
        thawed = time.monotonic()
        after: list[Attempt] = []
        while not after or after[-1].status_code != 200:
            assert time.monotonic() < thawed + RECOVERY_WAIT_S, after[-3:]
            after.append(await sign_up())
        ready_after = (await http.get("/readyz")).status_code

    for attempt in frozen:
        assert attempt.http_status == 200 and attempt.body is not None, attempt
        assert attempt.body["statusCode"] == 503 and attempt.body["message"] == message, attempt
        assert attempt.body["requestId"], attempt
    seconds = sorted(a.seconds for a in frozen)
    print(
        f"\nfrozen answers: n={len(seconds)} median={statistics.median(seconds) * 1000:.0f} ms "
        f"max={seconds[-1] * 1000:.0f} ms; recovered {after[-1].finished - thawed:.2f} s after the thaw"
    )
    assert ready == 503
    assert ready_after == 200
    return before + frozen + after
