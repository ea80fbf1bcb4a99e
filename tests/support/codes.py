"""Helpers for verification-code tests: send codes, and read them back from the outbox table."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path
from typing import Any

import httpx

from keyhall.server.courier.outbox import seal_context
from keyhall.server.crypto.kek import KeyEncryptionKey, read_key_file
from tests.support.servers import TEST_KEY_ENV, RunningServer

CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def kek_for_tests() -> KeyEncryptionKey:
    return read_key_file(Path(TEST_KEY_ENV["KEYHALL_SECRET_KEY_FILE"]))


def outbox_messages(server: RunningServer) -> list[dict[str, Any]]:
    """Every outbox row, oldest first, with its sealed payload opened (absent once sent)."""
    kek = kek_for_tests()
    rows = server.sql(
        "SELECT id, kind, state, payload, attempts, last_error FROM outbox_messages ORDER BY created_at, id"
    )
    messages = []
    for row in rows:
        item = {"id": row.id, "kind": row.kind, "state": row.state, "attempts": row.attempts}
        item["last_error"] = row.last_error
        if row.payload:
            item.update(json.loads(kek.open(row.payload, seal_context(row.id))))
        messages.append(item)
    return messages


def code_in(text: str) -> str:
    match = CODE.search(text)
    assert match, text
    return match.group(1)


def last_code_to(server: RunningServer, to: str) -> str:
    """The code of the newest dev-outbox message to ``to`` (a normalised email or an E.164 phone)."""
    mine = [m for m in outbox_messages(server) if m.get("to") == to]
    assert mine, f"no message to {to}"
    return code_in(mine[-1]["text"])


def random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def trusted_headers(server: RunningServer, ip: str | None = None, **extra: str) -> dict[str, str]:
    """Headers that prove the app secret and name a client address, so each test has its own IP budget."""
    basic = base64.b64encode(f"{server.app_id}:{server.app_secret}".encode()).decode()
    return {"authorization": f"Basic {basic}", "x-real-ip": ip or random_ip(), **extra}


def send_email(
    client: httpx.Client, server: RunningServer, email: str, channel: str = "CHANNEL_REGISTER", **headers: str
) -> dict[str, Any]:
    answer = client.post(
        "/api/v3/send-email",
        json={"channel": channel, "email": email},
        headers=trusted_headers(server, **headers),
    ).json()
    return answer  # type: ignore[no-any-return]


def send_sms(
    client: httpx.Client,
    server: RunningServer,
    phone: str,
    channel: str = "CHANNEL_REGISTER",
    country_code: str | None = None,
    **headers: str,
) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel, "phoneNumber": phone}
    if country_code:
        body["phoneCountryCode"] = country_code
    answer = client.post("/api/v3/send-sms", json=body, headers=trusted_headers(server, **headers)).json()
    return answer  # type: ignore[no-any-return]


def passcode_signup(client: httpx.Client, code: str, **payload: Any) -> dict[str, Any]:
    body = {"connection": "PASSCODE", "passCodePayload": {"passCode": code, **payload}}
    return client.post("/api/v3/signup", json=body).json()  # type: ignore[no-any-return]
