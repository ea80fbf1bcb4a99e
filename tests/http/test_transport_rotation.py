"""Key rotation on running servers: `keyhall keys rotate` against the servers' database, new keys served
after a refresh, old ones accepted during the grace period and refused after it, and the keyhall SDK
fetching the new keys again when the server answers 499/2016.

Servers of their own (SQLite and PostgreSQL, two workers each) with a short refresh interval, so that
rotating here does not disturb the session servers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from argon2 import PasswordHasher

from keyhall import AsyncAuthenticationClient, AuthenticationClient
from keyhall.sdk._encryption import encrypt_password
from tests.support.js import ensure_node_modules, js_ciphertexts
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    keyhall,
    start_server,
)

REFRESH_S = 0.2
PASSWORD = "Rotation-Proof-Passw0rd"
T = TypeVar("T")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rotating_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    ensure_node_modules()
    folder: Path = tmp_path_factory.mktemp(f"rotation-{request.param}")
    url = f"sqlite:///{folder / 'keyhall.db'}" if request.param == "sqlite" else create_postgres_database()
    server = start_server(
        request.param, url, folder / "server.log", env={"KEYHALL_TRANSPORT_KEY_REFRESH_S": str(REFRESH_S)}
    )
    yield server
    server.stop()
    if request.param == "postgres":
        drop_postgres_database(url)


def eventually(probe: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float = 20) -> T:
    """Call ``probe`` until ``done`` says its result is there (both workers must have refreshed)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while True:
        result = probe()
        streak = streak + 1 if done(result) else 0
        if streak >= 6:  # several answers in a row, whichever worker served them
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {result!r}")
        time.sleep(REFRESH_S / 2)


def system_info(server: RunningServer) -> Any:
    return httpx.get(f"{server.base_url}/api/v3/system", headers={"x-genauth-app-id": server.app_id}).json()


def sign_up(server: RunningServer, email: str, ciphertext: str, encrypt_type: str) -> Any:
    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": ciphertext},
        "options": {"passwordEncryptType": encrypt_type},
    }
    headers = {"x-genauth-app-id": server.app_id}
    return httpx.post(f"{server.base_url}/api/v3/signup", json=body, headers=headers, timeout=30).json()


def rotate(server: RunningServer, *args: str) -> Any:
    done = keyhall("keys", "rotate", "--database-url", server.database_url, "--json", *args)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_rotation_is_picked_up_and_old_keys_expire_after_the_grace_period(
    rotating_server: RunningServer, unique: str
) -> None:
    server = rotating_server
    old = system_info(server)
    (old_js,) = js_ciphertexts(old, [PASSWORD])

    record = rotate(server, "--grace", "1h")
    assert [entry["pool_id"] for entry in record] == [server.pool_id]
    assert sorted(key["kind"] for key in record[0]["keys"]) == ["rsa", "sm2"]
    assert all(key["old_keys"] == 1 for key in record[0]["keys"])

    new = eventually(lambda: system_info(server), lambda info: info["sm2"] != old["sm2"], "new keys served")
    assert new["rsa"] != old["rsa"]
    (new_js,) = js_ciphertexts(new, [PASSWORD])

    # During the grace period: the old keys and the new ones.
    for n, (encrypt_type, ciphertext) in enumerate(
        [("rsa", old_js["rsa"]), ("sm2", old_js["sm2"]), ("rsa", new_js["rsa"]), ("sm2", new_js["sm2"])]
    ):
        email = f"grace.{n}.{unique}@example.com"
        answer = sign_up(server, email, ciphertext, encrypt_type)
        assert answer["statusCode"] == 200, (n, answer)
        stored = server.sql("SELECT password_hash FROM users WHERE email_norm = :e", e=email)[0][0]
        assert PasswordHasher().verify(stored, PASSWORD)

    # The grace period ends: the old keys are refused, the new ones still work.
    past = datetime.now(UTC) - timedelta(seconds=1)
    server.sql("UPDATE transport_keys SET accept_until = :t WHERE accept_until IS NOT NULL", t=past)
    before = server.user_count()
    attempt = iter(range(1000))
    for encrypt_type in ("rsa", "sm2"):
        refused = eventually(
            lambda kind=encrypt_type: sign_up(  # type: ignore[misc]
                server, f"late.{next(attempt)}.{unique}@example.com", old_js[kind], kind
            ),
            lambda answer: answer.get("apiCode") == 2016,
            f"old {encrypt_type} key refused",
        )
        assert refused["statusCode"] == 499
    (fresh_js,) = js_ciphertexts(new, [PASSWORD])
    assert sign_up(server, f"after.{unique}@example.com", fresh_js["sm2"], "sm2")["statusCode"] == 200
    # No refused attempt stored a user: only the one sign-up with the new key, plus any attempts that
    # reached a worker before it refreshed (still in the grace period as that worker knew it).
    late = server.sql("SELECT count(*) FROM users WHERE email_norm LIKE :p", p=f"late.%.{unique}@example.com")
    assert server.user_count() == before + 1 + int(late[0][0])

    # A later rotation removes the keys whose grace period is over.
    record = rotate(server, "--grace", "0")
    assert record[0]["removed_expired"] == 2


def test_sdk_fetches_new_keys_after_a_rotation_and_retries(
    rotating_server: RunningServer, unique: str
) -> None:
    server = rotating_server
    fetches: list[str] = []

    def count(request: httpx.Request) -> None:
        fetches.append(request.url.path)

    sync_http = httpx.Client(event_hooks={"request": [count]}, timeout=30)
    with AuthenticationClient(
        app_id=server.app_id, app_host=server.base_url, password_encrypt_type="rsa", http_client=sync_http
    ) as client:
        first = client.sign_up_by_email_password(f"sdk1.{unique}@example.com", PASSWORD)
        assert first["statusCode"] == 200, first
        sm2_first = client.sign_up_by_email_password(
            f"sdk1b.{unique}@example.com", PASSWORD, options={"passwordEncryptType": "sm2"}
        )
        assert sm2_first["statusCode"] == 200, sm2_first
        cached = dict(client._public_keys)

        async def async_sign_ups(emails: list[str]) -> list[Any]:
            async with AsyncAuthenticationClient(app_id=server.app_id, app_host=server.base_url) as aclient:
                answers = [
                    await aclient.sign_up_by_email_password(
                        emails[0], PASSWORD, options={"passwordEncryptType": "sm2"}
                    )
                ]
                async_cached.update(aclient._public_keys)
                await asyncio.to_thread(rotate_and_wait)
                answers.append(
                    await aclient.sign_up_by_email_password(
                        emails[1], PASSWORD, options={"passwordEncryptType": "sm2"}
                    )
                )
                async_fresh.update(aclient._public_keys)
                return answers

        async_cached: dict[str, str] = {}
        async_fresh: dict[str, str] = {}

        def rotate_and_wait() -> None:
            # No grace: the keys the clients cached are refused as soon as the servers refresh.
            rotate(server, "--grace", "0")
            eventually(
                lambda: system_info(server), lambda info: info["rsa"]["publicKey"] != cached["rsa"], "rotated"
            )
            eventually(
                lambda: sign_up(
                    server,
                    f"probe.{time.monotonic_ns()}.{unique}@example.com",
                    encrypt_password(PASSWORD, "sm2", cached["sm2"]),
                    "sm2",
                ),
                lambda answer: answer.get("apiCode") == 2016,
                "old keys refused",
            )

        async_answers = asyncio.run(
            async_sign_ups([f"asdk1.{unique}@example.com", f"asdk2.{unique}@example.com"])
        )
        assert [answer["statusCode"] for answer in async_answers] == [200, 200], async_answers
        assert async_fresh["sm2"] != async_cached["sm2"]

        fetches.clear()
        again = client.sign_up_by_email_password(f"sdk2.{unique}@example.com", PASSWORD)
        assert again["statusCode"] == 200, again
        # Refused with the cached key, keys fetched again, sent once more.
        assert fetches == ["/api/v3/signup", "/api/v3/system", "/api/v3/signup"]
        assert client._public_keys["rsa"] != cached["rsa"]
    stored = server.sql(
        "SELECT password_hash FROM users WHERE email_norm = :e", e=f"sdk2.{unique}@example.com"
    )
    assert PasswordHasher().verify(stored[0][0], PASSWORD)


def test_rotate_refuses_a_bad_grace_and_an_unknown_pool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    keyhall("init", "--database-url", url)
    bad_grace = keyhall("keys", "rotate", "--database-url", url, "--grace", "soon", check=False)
    assert bad_grace.returncode == 2 and "--grace" in bad_grace.stderr
    unknown = keyhall("keys", "rotate", "--database-url", url, "--pool", "nope", check=False)
    assert unknown.returncode == 1 and "no user pool 'nope'" in unknown.stderr
    done = keyhall("keys", "rotate", "--database-url", url, "--grace", "30m")
    assert "rsa: new key" in done.stdout and "sm2: new key" in done.stdout and "accepted until" in done.stdout


def test_rotate_keeps_the_old_keys_for_24_hours_by_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'default-grace.db'}"
    keyhall("init", "--database-url", url)
    before = datetime.now(UTC)
    done = keyhall("keys", "rotate", "--database-url", url, "--json")
    after = datetime.now(UTC)
    [record] = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(key["kind"] for key in record["keys"]) == ["rsa", "sm2"]
    for key in record["keys"]:
        until = datetime.fromisoformat(key["old_keys_accepted_until"])
        assert before + timedelta(hours=24) <= until <= after + timedelta(hours=24), key
        assert key["old_keys"] == 1
