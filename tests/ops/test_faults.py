"""Faults survived: kill -9 under a sign-up load (PostgreSQL and SQLite) and a duplicate race split across
two server processes on one PostgreSQL database.

Bounded and on loopback: each kill test signs up LOAD users through ``CONCURRENCY`` connections, kills the
whole server (the supervisor and its workers: the process group) with SIGKILL once ``KILL_AFTER`` answers
have come back, restarts it on the same database and checks what it finds there.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.test_race import RACERS, mixed_case
from tests.http.test_signup import STRONG
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    start_server,
)

LOAD = 48
CONCURRENCY = 12
KILL_AFTER = 14


def _body(email: str, index: int) -> dict[str, Any]:
    return {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": STRONG},
        "profile": {"nickname": f"n{index}", "customData": {"index": index}},
    }


async def _load_and_kill(server: RunningServer, emails: list[str]) -> dict[str, dict[str, Any] | None]:
    """Sign every email up; SIGKILL the server's process group after KILL_AFTER answers. None: no answer."""
    answers: dict[str, dict[str, Any] | None] = {}
    killed = asyncio.Event()  # once: later failures must not signal a group that may be gone
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY)

    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}, timeout=60, limits=limits
    ) as http:

        async def sign_up(index: int, email: str) -> None:
            async with gate:
                try:
                    response = await http.post("/api/v3/signup", json=_body(email, index))
                    answers[email] = response.json()
                except (httpx.HTTPError, ValueError):
                    answers[email] = None  # connection refused or cut: the client never learnt the outcome
                if not killed.is_set() and sum(1 for a in answers.values() if a is not None) >= KILL_AFTER:
                    killed.set()
                    os.killpg(server.process.pid, signal.SIGKILL)

        await asyncio.gather(*(sign_up(i, email) for i, email in enumerate(emails)))
    server.process.wait(timeout=30)
    return answers


def _check_after_restart(
    server: RunningServer, emails: list[str], answers: dict[str, dict[str, Any] | None]
) -> None:
    acknowledged = {
        email: answer["data"]["userId"]
        for email, answer in answers.items()
        if answer is not None and answer["statusCode"] == 200
    }
    assert len(acknowledged) >= KILL_AFTER - CONCURRENCY, answers  # the load really ran before the kill
    unanswered = [email for email, answer in answers.items() if answer is None]
    assert unanswered, "the kill came too late to cut any request"
    failed_otherwise = [a for a in answers.values() if a is not None and a["statusCode"] != 200]
    assert failed_otherwise == [], failed_otherwise  # before the kill, nothing but successes

    rows = server.sql(
        "SELECT id, email, email_norm, password_hash, password_security_level, password_last_set_at, "
        "status, nickname, custom_data, created_at FROM users WHERE email_norm LIKE :pattern",
        pattern=f"%.{emails[0].split('.', 1)[1]}",
    )
    stored = {row.email: row for row in rows}
    for email, user_id in acknowledged.items():
        assert email in stored, f"acknowledged sign-up {email} is missing after the restart"
        assert stored[email].id == user_id
    for email, row in stored.items():  # every row there, acknowledged or not, is a whole user
        index = emails.index(email)
        assert row.email_norm == email
        assert row.password_hash and row.password_hash.startswith("$argon2id$")
        assert row.password_security_level is not None and row.password_last_set_at is not None
        assert row.status == "Activated" and row.created_at is not None
        assert row.nickname == f"n{index}"
        custom = row.custom_data if isinstance(row.custom_data, dict) else json.loads(row.custom_data)
        assert custom == {"index": index}
    # The restarted server knows them: a repeat of an acknowledged sign-up is refused as a duplicate.
    with httpx.Client(base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}) as http:
        email = next(iter(acknowledged))
        again = http.post("/api/v3/signup", json=_body(email, emails.index(email))).json()
        assert (again["statusCode"], again.get("apiCode")) == (409, 2026), again
        if server.backend == "sqlite":
            assert server.sql("PRAGMA integrity_check")[0][0] == "ok"


def _kill_and_restart(backend: str, url: str, folder: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    emails = [f"kill{i}.{tag}@example.com" for i in range(LOAD)]
    server = start_server(backend, url, folder / "killed.log", workers=2, new_session=True)
    try:
        answers = asyncio.run(_load_and_kill(server, emails))
    finally:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
    restarted = start_server(backend, url, folder / "restarted.log", workers=1)
    try:
        _check_after_restart(restarted, emails, answers)
    finally:
        restarted.stop()


def test_kill_9_under_signup_load_loses_no_acknowledged_user_on_sqlite(tmp_path: Path) -> None:
    _kill_and_restart("sqlite", f"sqlite:///{tmp_path / 'keyhall.db'}", tmp_path)


def test_kill_9_under_signup_load_loses_no_acknowledged_user_on_postgres(tmp_path: Path) -> None:
    url = create_postgres_database()
    try:
        _kill_and_restart("postgres", url, tmp_path)
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module")
def second_postgres_server(
    postgres_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Another `keyhall serve` on the session PostgreSQL server's database."""
    folder = tmp_path_factory.mktemp("second-postgres")
    server = start_server("postgres", postgres_server.database_url, folder / "server.log", workers=1)
    yield server
    server.stop()


def test_duplicate_race_split_across_two_servers_has_one_winner(
    postgres_server: RunningServer, second_postgres_server: RunningServer, unique: str
) -> None:
    email = f"tworacer.{unique}@example.com"
    bodies = [
        {"connection": "PASSWORD", "passwordPayload": {"email": mixed_case(email, i), "password": STRONG}}
        for i in range(RACERS)
    ]

    async def race() -> list[dict[str, Any]]:
        clients = [
            httpx.AsyncClient(
                base_url=server.base_url,
                headers={"x-genauth-app-id": server.app_id},
                timeout=120,
                limits=httpx.Limits(max_connections=RACERS),
            )
            for server in (postgres_server, second_postgres_server)
        ]
        try:
            responses = await asyncio.gather(
                *(clients[i % 2].post("/api/v3/signup", json=body) for i, body in enumerate(bodies))
            )
        finally:
            for http in clients:
                await http.aclose()
        return [r.json() for r in responses]

    answers = asyncio.run(race())
    outcomes = sorted((a["statusCode"], a.get("apiCode")) for a in answers)
    assert outcomes.count((200, None)) == 1, outcomes
    assert outcomes.count((409, 2026)) == RACERS - 1, outcomes
    assert postgres_server.sql("SELECT count(*) FROM users WHERE email_norm = :e", e=email)[0][0] == 1
