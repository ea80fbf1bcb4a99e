"""Concurrent sign-ups of one identifier: exactly one wins, the rest get 409, never a 500."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from tests.http.test_signup import STRONG
from tests.support.servers import RunningServer

RACERS = 40


def mixed_case(text: str, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


async def race(server: RunningServer, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}, timeout=120, limits=limits
    ) as http:
        responses = await asyncio.gather(*(http.post("/api/v3/signup", json=body) for body in bodies))
    assert all(r.status_code == 200 for r in responses)
    return [r.json() for r in responses]


@pytest.mark.parametrize(
    ("field", "column", "api_code"),
    [("email", "email_norm", 2026), ("username", "username_norm", 2034)],
)
def test_forty_concurrent_signups_of_one_identifier_in_mixed_case(
    server: RunningServer, unique: str, field: str, column: str, api_code: int
) -> None:
    value = f"racer.{unique}@example.com" if field == "email" else f"Racer{unique}"
    bodies = [
        {"connection": "PASSWORD", "passwordPayload": {field: mixed_case(value, i), "password": STRONG}}
        for i in range(RACERS)
    ]
    answers = asyncio.run(race(server, bodies))

    outcomes = sorted((a["statusCode"], a.get("apiCode")) for a in answers)
    assert outcomes.count((200, None)) == 1, outcomes
    assert outcomes.count((409, api_code)) == RACERS - 1, outcomes
    rows = server.sql(f"SELECT count(*) FROM users WHERE {column} = :v", v=value.casefold())
    assert rows[0][0] == 1
    assert "database is locked" not in server.log_text()


def test_concurrent_signups_of_different_emails_all_succeed(server: RunningServer, unique: str) -> None:
    bodies = [
        {
            "connection": "PASSWORD",
            "passwordPayload": {"email": f"many{i}.{unique}@example.com", "password": STRONG},
        }
        for i in range(RACERS)
    ]
    answers = asyncio.run(race(server, bodies))
    assert [a["statusCode"] for a in answers] == [200] * RACERS
    assert len({a["data"]["userId"] for a in answers}) == RACERS
    assert "database is locked" not in server.log_text()


def test_log_lines_stay_whole_json_records_under_concurrency(server: RunningServer, unique: str) -> None:
    """Both workers log at once during races; each line must still be exactly one JSON record."""
    import json

    bodies = [
        {
            "connection": "PASSWORD",
            "passwordPayload": {"email": f"log{i}.{unique}@example.com", "password": "x"},
        }
        for i in range(RACERS)
    ]
    asyncio.run(race(server, bodies))
    records = [line for line in server.log_text().splitlines() if line.startswith("{")]
    assert len(records) >= RACERS
    for line in records:
        record = json.loads(line)  # two records glued on one line fail to parse here
        assert "event" in record
