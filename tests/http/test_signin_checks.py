"""Sign-in checks that need servers of their own: two `keyhall serve` processes on one PostgreSQL database
(no Redis) sharing the lockout through the database; the official genauth SDK locked out after 12 wrong
passwords; token lifetimes set per application. (That an unknown account costs the same argon2id
verification as a wrong password is pinned by counting, in tests/store/test_signin_flow.py: tests here
assert no timings.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import genauth
import httpx
import jwt
import pytest

from tests.http.test_signin_http import sign_in, sign_up
from tests.http.test_signup import STRONG
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    keyhall,
    start_server,
)

# Pool and app settings changed with SQL apply to the next request.
NO_APP_CACHE = {"KEYHALL_APP_CACHE_TTL_S": "0"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two servers, one process each, on one PostgreSQL database; counters in the database (no Redis)."""
    folder = tmp_path_factory.mktemp("signin-pair")
    url = create_postgres_database()
    servers: list[RunningServer] = []
    try:
        servers.append(start_server("postgres", url, folder / "first.log", workers=1, env=NO_APP_CACHE))
        servers.append(start_server("postgres", url, folder / "second.log", workers=1, env=NO_APP_CACHE))
        # Every wrong password of this module comes from 127.0.0.1: keep the per-address cap out of the way.
        servers[0].sql("UPDATE pools SET signin_max_failures_per_ip = 10000")
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        drop_postgres_database(url)


def _http(server: RunningServer, app_id: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"x-genauth-app-id": app_id}, timeout=30)


def test_the_lockout_is_shared_by_two_servers_through_the_database(
    pair: tuple[RunningServer, RunningServer], unique: str
) -> None:
    first, second = pair
    email = f"db.lockout.{unique}@example.com"
    with _http(first, first.app_id) as one, _http(second, first.app_id) as two:
        sign_up(one, email)
        answers = [sign_in((one, two)[i % 2], email, f"wrong-{i}") for i in range(10)]
        assert [a.get("apiCode") for a in answers] == [2333] * 10  # five failures on each server
        for http in (one, two):  # locked on both, even with the right password
            right = sign_in(http, email, STRONG)
            assert (right["statusCode"], right.get("apiCode")) == (403, 2005), right
    assert first.sql("SELECT count(*) FROM rate_limit_counters")[0][0] > 0  # counted in the database


def test_official_sdk_after_twelve_wrong_passwords_the_right_one_is_refused(
    pair: tuple[RunningServer, RunningServer], unique: str
) -> None:
    first, _ = pair
    official = genauth.AuthenticationClient(
        app_id=first.app_id, app_secret=first.app_secret, app_host=first.base_url
    )
    email = f"sdk.lockout.{unique}@example.com"
    assert official.sign_up_by_email_password(email, STRONG)["statusCode"] == 200
    answers = [official.sign_in_by_email_password(email.upper(), STRONG + "x") for _ in range(12)]
    assert [(a["statusCode"], a.get("apiCode")) for a in answers] == [(403, 2333)] * 10 + [(403, 2005)] * 2
    right = official.sign_in_by_email_password(email, STRONG)
    assert (right["statusCode"], right.get("apiCode")) == (403, 2005), right
    assert "data" not in right


def test_token_lifetimes_are_set_per_application(
    pair: tuple[RunningServer, RunningServer], unique: str
) -> None:
    first, _ = pair
    created = keyhall(
        "app", "create", "--name", f"short {unique}", "--database-url", first.database_url, "--json"
    )
    short_app = json.loads(created.stdout.strip().splitlines()[-1])["app_id"]
    first.sql(
        "UPDATE applications SET access_token_ttl_s = 600, id_token_ttl_s = 1200,"
        " refresh_token_ttl_s = 86400 WHERE id = :id",
        id=short_app,
    )
    email = f"ttl.{unique}@example.com"
    with _http(first, short_app) as short, _http(first, first.app_id) as default:
        sign_up(short, email)
        tokens = sign_in(short, email, STRONG, scope="openid offline_access")["data"]
        usual = sign_in(default, email, STRONG, scope="openid offline_access")["data"]
    assert tokens["expire_in"] == tokens["expires_in"] == 600
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    id_claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert (access["exp"] - access["iat"], id_claims["exp"] - id_claims["iat"]) == (600, 1200)
    assert access["aud"] == id_claims["aud"] == short_app
    assert _refresh_lifetime_s(first, tokens["refresh_token"]) == 86400
    # the pool's default application keeps the defaults: 2 h, 2 h, 30 days
    assert usual["expires_in"] == 7200
    default_id = jwt.decode(usual["id_token"], options={"verify_signature": False})
    assert default_id["exp"] - default_id["iat"] == 7200
    assert _refresh_lifetime_s(first, usual["refresh_token"]) == 30 * 24 * 3600


def _refresh_lifetime_s(server: RunningServer, token: str) -> int:
    digest = hashlib.sha256(token.encode()).hexdigest()
    [(created, expires)] = server.sql(
        "SELECT created_at, expires_at FROM refresh_tokens WHERE token_sha256 = :d", d=digest
    )
    return int((_moment(expires) - _moment(created)).total_seconds())


def _moment(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=None)
