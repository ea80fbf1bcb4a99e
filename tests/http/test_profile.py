"""The signed-in user's own account over HTTP: get-profile, update-profile, update-password,
get-security-info; and the password rehash on sign-in when the pool's argon2 parameters change."""

from __future__ import annotations

import json
import time

import httpx

from tests.http.test_signin_http import refresh, sign_in, sign_up
from tests.http.test_signup import STRONG
from tests.support.servers import RunningServer

NEW = "Green-Meadow-4-Compass"


def test_update_password_revokes_the_other_sessions_refresh_tokens(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"pwchange.{unique}@example.com"
    sign_up(client, email)
    mine = sign_in(client, email, scope="openid offline_access")["data"]
    other = sign_in(client, email, scope="openid offline_access")["data"]
    auth = {"authorization": mine["access_token"]}

    wrong = client.post(
        "/api/v3/update-password", json={"newPassword": NEW, "oldPassword": "not-it-123"}, headers=auth
    ).json()
    assert (wrong["statusCode"], wrong["apiCode"]) == (403, 2006)
    weak = client.post(
        "/api/v3/update-password", json={"newPassword": "abc", "oldPassword": STRONG}, headers=auth
    ).json()
    assert (weak["statusCode"], weak["apiCode"]) == (400, 2029)
    no_old = client.post("/api/v3/update-password", json={"newPassword": NEW}, headers=auth).json()
    assert no_old["statusCode"] == 400 and "oldPassword" in no_old["message"]

    done = client.post(
        "/api/v3/update-password", json={"newPassword": NEW, "oldPassword": STRONG}, headers=auth
    ).json()
    assert done["statusCode"] == 200, done
    assert refresh(client, server, other["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(client, server, mine["refresh_token"]).status_code == 200
    assert sign_in(client, email)["apiCode"] == 2333
    assert sign_in(client, email, NEW)["statusCode"] == 200


def test_get_profile_needs_a_valid_token_and_honours_the_flags(client: httpx.Client, unique: str) -> None:
    email = f"profile.{unique}@example.com"
    user_id = sign_up(client, email)
    access = sign_in(client, email)["data"]["access_token"]
    plain = client.get("/api/v3/get-profile", headers={"authorization": access}).json()
    assert plain["data"]["userId"] == user_id
    assert "customData" not in plain["data"] and "identities" not in plain["data"]
    full = client.get(
        "/api/v3/get-profile",
        params={"withCustomData": "True", "withIdentities": "true"},
        headers={"authorization": f"Bearer {access}"},
    ).json()
    assert full["data"]["customData"] == {} and full["data"]["identities"] == []
    for header in ({}, {"authorization": "Bearer x"}, {"authorization": access[:-4] + "AAAA"}):
        refused = client.get("/api/v3/get-profile", headers=header).json()
        assert refused["statusCode"] == 401, refused
        assert refused["requestId"]


def test_update_profile_changes_fields_and_refuses_a_taken_username(
    client: httpx.Client, unique: str
) -> None:
    email = f"upd.{unique}@example.com"
    sign_up(client, email)
    taken = f"taken_{unique}"
    client.post(
        "/api/v3/signup",
        json={"connection": "PASSWORD", "passwordPayload": {"username": taken, "password": STRONG}},
    )
    auth = {"authorization": sign_in(client, email)["data"]["access_token"]}
    answer = client.post(
        "/api/v3/update-profile",
        json={"nickname": "Nick", "gender": "F", "birthdate": "1990.1.2", "customData": {"k": 1}},
        headers=auth,
    ).json()
    assert answer["statusCode"] == 200, answer
    assert (answer["data"]["nickname"], answer["data"]["gender"], answer["data"]["birthdate"]) == (
        "Nick",
        "F",
        "1990-01-02",
    )
    assert answer["data"]["customData"] == {"k": 1}
    clash = client.post("/api/v3/update-profile", json={"username": taken.upper()}, headers=auth).json()
    assert (clash["statusCode"], clash["apiCode"]) == (409, 2034)
    bad = client.post("/api/v3/update-profile", json={"photo": "javascript:alert(1)"}, headers=auth).json()
    assert bad["statusCode"] == 400 and "photo" in bad["message"]


def test_security_info(client: httpx.Client, unique: str) -> None:
    email = f"sec.{unique}@example.com"
    sign_up(client, email)
    auth = {"authorization": sign_in(client, email)["data"]["access_token"]}
    info = client.get("/api/v3/get-security-info", headers=auth).json()["data"]
    assert info["passwordSet"] is True and info["emailBinded"] is True and info["phoneBinded"] is False
    assert info["mfaEnrolled"] is False
    assert info["passwordSecurityLevel"] == 3
    assert info["securityScore"] == 50  # strong password 40 + unverified email 10


def test_sign_in_rehashes_when_the_pool_parameters_change(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"rehash.{unique}@example.com"
    user_id = sign_up(client, email)
    before = server.sql("SELECT password_hash FROM users WHERE id = :id", id=user_id)[0][0]
    assert "m=19456,t=2,p=1" in before
    original = server.sql(
        "SELECT argon2_time_cost, argon2_memory_kib FROM pools WHERE id = :id", id=server.pool_id
    )[0]
    server.sql(
        "UPDATE pools SET argon2_time_cost = 3, argon2_memory_kib = 12288 WHERE id = :id", id=server.pool_id
    )
    try:
        assert sign_in(client, email)["statusCode"] == 200
        after = server.sql("SELECT password_hash FROM users WHERE id = :id", id=user_id)[0][0]
        assert "m=12288,t=3,p=1" in after
        assert sign_in(client, email)["statusCode"] == 200  # the new hash verifies
    finally:
        server.sql(
            "UPDATE pools SET argon2_time_cost = :t, argon2_memory_kib = :m WHERE id = :id",
            t=original[0],
            m=original[1],
            id=server.pool_id,
        )


def test_reads_refuse_a_revoked_token_and_a_deleted_user(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    """get-profile, get-security-info and /oidc/me read the user and the token's revocation in one
    statement: each must still refuse a revoked token and a token whose user is gone."""
    reads = (
        lambda token: client.get("/api/v3/get-profile", headers={"authorization": token}).json(),
        lambda token: client.get(
            "/api/v3/get-security-info", headers={"authorization": f"Bearer {token}"}
        ).json(),
    )

    def me(token: str) -> httpx.Response:
        return client.get("/oidc/me", headers={"authorization": f"Bearer {token}"})

    email = f"revoked.{unique}@example.com"
    user_id = sign_up(client, email)
    revoked, kept = (sign_in(client, email)["data"]["access_token"] for _ in range(2))
    for read in reads:
        assert read(revoked)["statusCode"] == 200
    assert me(revoked).json()["sub"] == user_id
    gone = client.post(
        "/oidc/token/revocation",
        data={"token": revoked, "client_id": server.app_id, "client_secret": server.app_secret},
    )
    assert gone.status_code == 200
    for read in reads:
        answer = read(revoked)
        assert answer["statusCode"] == 401 and "revoked" in answer["message"], answer
        assert read(kept)["statusCode"] == 200  # only that token's jti is revoked
    assert me(revoked).status_code == 401 and me(kept).status_code == 200

    server.sql("DELETE FROM users WHERE id = :id", id=user_id)
    for read in reads:
        answer = read(kept)
        assert answer["statusCode"] == 401 and "no longer exists" in answer["message"], answer
    assert me(kept).status_code == 401


def test_a_user_suspended_after_signing_in_loses_the_access_token_at_once(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"suspended.after.{unique}@example.com"
    user_id = sign_up(client, email)
    auth = {"authorization": sign_in(client, email)["data"]["access_token"]}
    assert client.get("/api/v3/get-profile", headers=auth).json()["statusCode"] == 200
    server.sql("UPDATE users SET status = 'Suspended' WHERE id = :id", id=user_id)
    for answer in (
        client.get("/api/v3/get-profile", headers=auth).json(),
        client.get("/api/v3/get-security-info", headers=auth).json(),
        client.post("/api/v3/update-profile", json={"nickname": "x"}, headers=auth).json(),
        client.post(
            "/api/v3/update-password", json={"newPassword": NEW, "oldPassword": STRONG}, headers=auth
        ).json(),
    ):
        assert answer["statusCode"] == 401 and "Suspended" in answer["message"], answer
    assert (
        client.get("/oidc/me", headers={"authorization": f"Bearer {auth['authorization']}"}).status_code
        == 401
    )
    assert (
        server.sql("SELECT nickname FROM users WHERE id = :id", id=user_id)[0][0] is None
    )  # nothing changed
    server.sql("UPDATE users SET status = 'Activated' WHERE id = :id", id=user_id)
    assert client.get("/api/v3/get-profile", headers=auth).json()["statusCode"] == 200


def test_every_worker_answers_get_profile_with_the_change_made_through_another(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    """Each worker process keeps the users it read (keyhall.server.store.user_cache); a change made
    through any worker, or by SQL beside the server, reaches every worker's next answer (on PostgreSQL
    as soon as its notification arrives: the bound below is generous, not a measurement)."""
    email = f"everyworker.{unique}@example.com"
    user_id = sign_up(client, email)
    auth = {**client.headers, "authorization": sign_in(client, email)["data"]["access_token"]}

    def nicknames(count: int = 8) -> set[str | None]:
        seen = set()
        for _ in range(count):  # a new connection each: the workers take turns at accepting them
            answer = httpx.get(server.base_url + "/api/v3/get-profile", headers=auth)
            body = answer.json()
            assert body["statusCode"] == 200, body
            # The cached answer is encoded as any other envelope: compact, in the envelope's key order.
            assert list(body) == ["statusCode", "message", "requestId", "data"]
            assert answer.content == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            seen.add(body["data"]["nickname"])
        return seen

    def settles_on(expected: str) -> None:
        deadline = time.monotonic() + 5.0
        while nicknames() != {expected}:
            assert time.monotonic() < deadline, f"a worker kept answering without {expected!r}"

    assert nicknames() == {None}  # every worker has the user cached now
    changed = client.post("/api/v3/update-profile", json={"nickname": "Through-one"}, headers=auth).json()
    assert changed["statusCode"] == 200, changed
    settles_on("Through-one")
    server.sql("UPDATE users SET nickname = 'By-sql' WHERE id = :id", id=user_id)
    settles_on("By-sql")
