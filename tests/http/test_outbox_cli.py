"""`keyhall outbox [--follow]`: the dev outbox as a developer reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx

from tests.support.codes import code_in, last_code_to, send_email
from tests.support.servers import TEST_KEY_ENV, RunningServer, keyhall


def test_outbox_command_prints_dev_messages_with_their_code(
    sqlite_server: RunningServer, unique: str
) -> None:
    email = f"cli.{unique}@example.com"
    with httpx.Client(
        base_url=sqlite_server.base_url, headers={"x-genauth-app-id": sqlite_server.app_id}
    ) as c:
        assert send_email(c, sqlite_server, email)["statusCode"] == 200
    code = last_code_to(sqlite_server, email)
    result = keyhall("outbox", "--database-url", sqlite_server.database_url, "--json", "--limit", "1000")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    mine = [m for m in lines if m.get("to") == email]
    assert len(mine) == 1 and mine[0]["state"] == "dev" and code_in(mine[0]["text"]) == code
    human = keyhall("outbox", "--database-url", sqlite_server.database_url, "--limit", "1000").stdout
    assert f"email to {email}  [dev]" in human and code in human


def test_outbox_follow_prints_new_messages(sqlite_server: RunningServer, unique: str) -> None:
    first, second = f"follow1.{unique}@example.com", f"follow2.{unique}@example.com"
    headers = {"x-genauth-app-id": sqlite_server.app_id}
    with httpx.Client(base_url=sqlite_server.base_url, headers=headers) as client:
        assert send_email(client, sqlite_server, first)["statusCode"] == 200
        process = subprocess.Popen(
            [sys.executable, "-m", "keyhall", "outbox", "--follow", "--json", "--limit", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **TEST_KEY_ENV, "KEYHALL_DATABASE_URL": sqlite_server.database_url},
        )
        seen: list[dict[str, object]] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                seen.append(json.loads(line))

        threading.Thread(target=read, daemon=True).start()
        try:
            _wait_printed(seen, first)  # the backlog: the command is now following
            assert send_email(client, sqlite_server, second)["statusCode"] == 200
            _wait_printed(seen, second)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_printed(seen: list[dict[str, object]], email: str) -> None:
    deadline = time.monotonic() + 30
    while not any(m.get("to") == email for m in seen):
        assert time.monotonic() < deadline, f"the message to {email} was not printed"
        time.sleep(0.05)
