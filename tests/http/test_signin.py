"""Sign-in over HTTP: lockout, suspended users, refresh-token rotation and reuse, update-password, rehash,
JWKS and discovery; against the real server on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from tests.http.test_signup import STRONG
from tests.support.servers import RunningServer

OTHER = "An0ther-Correct-Horse-Battery"


def sign_up(client: httpx.Client, email: str) -> str:
    answer = client.post(
        "/api/v3/signup",
        json={"connection": "PASSWORD", "passwordPayload": {"email": email, "password": STRONG}},
    )
    body = answer.json()
    assert body["statusCode"] == 200, body
    return str(body["data"]["userId"])


def sign_in(
    client: httpx.Client,
    server: RunningServer,
    email: str,
    password: str,
    scope: str = "openid offline_access",
) -> dict[str, Any]:
    answer = client.post(
        "/api/v3/signin",
        json={
            "connection": "PASSWORD",
            "passwordPayload": {"email": email, "password": password},
            "options": {"scope": scope},
            "client_id": server.app_id,
            "client_secret": server.app_secret,
        },
    )
    return answer.json()  # type: ignore[no-any-return]


def refresh(client: httpx.Client, server: RunningServer, token: str) -> httpx.Response:
    return client.post(
        "/oidc/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": server.app_id,
            "client_secret": server.app_secret,
        },
    )


def test_twelve_wrong_passwords_lock_the_account(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"lock.{unique}@example.com"
    sign_up(client, email)
    answers = [sign_in(client, server, email, STRONG + "x") for _ in range(12)]
    assert [a["apiCode"] for a in answers[:10]] == [2333] * 10
    assert all(a["statusCode"] == 403 and a["apiCode"] == 2005 for a in answers[10:]), answers[10:]
    right = sign_in(client, server, email, STRONG)
    assert right["statusCode"] == 403 and right["apiCode"] == 2005, right
    assert "retry" in right["message"] and right["requestId"]
    assert STRONG not in str(right)


def test_suspended_user_cannot_sign_in(server: RunningServer, client: httpx.Client, unique: str) -> None:
    email = f"suspended.{unique}@example.com"
    user_id = sign_up(client, email)
    assert sign_in(client, server, email, STRONG)["statusCode"] == 200
    server.sql("UPDATE users SET status = 'Suspended' WHERE id = :id", id=user_id)
    refused = sign_in(client, server, email, STRONG)
    assert refused["statusCode"] == 403, refused
    assert "Suspended" in refused["message"]
    # a wrong password still gets the answer that reveals nothing
    assert sign_in(client, server, email, STRONG + "x")["apiCode"] == 2333


def test_reusing_a_rotated_refresh_token_revokes_the_family(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"family.{unique}@example.com"
    sign_up(client, email)
    first = sign_in(client, server, email, STRONG)["data"]["refresh_token"]
    second = refresh(client, server, first)
    assert second.status_code == 200, second.text
    second_token = second.json()["refresh_token"]
    reused = refresh(client, server, first)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant", reused.text
    # the whole family is gone: the token the legitimate holder got is refused too
    after = refresh(client, server, second_token)
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    # stored hashed: the database never holds the token itself
    assert not server.sql("SELECT id FROM refresh_tokens WHERE token_sha256 = :t", t=first)


def test_refresh_with_basic_auth_and_with_a_wrong_secret(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"basic.{unique}@example.com"
    sign_up(client, email)
    token = sign_in(client, server, email, STRONG)["data"]["refresh_token"]
    wrong = client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(server.app_id, "not-the-secret"),
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    ok = client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(server.app_id, server.app_secret),
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["token_type"] == "Bearer"


def test_update_password_revokes_other_refresh_tokens(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"change.{unique}@example.com"
    sign_up(client, email)
    other_session = sign_in(client, server, email, STRONG)["data"]["refresh_token"]
    mine = sign_in(client, server, email, STRONG)["data"]
    headers = {"authorization": "Bearer " + mine["access_token"]}
    wrong_old = client.post(
        "/api/v3/update-password",
        json={"oldPassword": "nope" + STRONG, "newPassword": OTHER},
        headers=headers,
    ).json()
    assert wrong_old["statusCode"] == 403 and wrong_old["requestId"], wrong_old
    weak = client.post(
        "/api/v3/update-password", json={"oldPassword": STRONG, "newPassword": "123"}, headers=headers
    ).json()
    assert weak["statusCode"] == 400, weak
    changed = client.post(
        "/api/v3/update-password", json={"oldPassword": STRONG, "newPassword": OTHER}, headers=headers
    ).json()
    assert changed["statusCode"] == 200, changed
    assert refresh(client, server, other_session).status_code == 400
    assert sign_in(client, server, email, STRONG)["apiCode"] == 2333
    assert sign_in(client, server, email, OTHER)["statusCode"] == 200


def test_sign_in_rehashes_after_the_pool_parameters_change(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"rehash.{unique}@example.com"
    user_id = sign_up(client, email)
    [(before,)] = server.sql("SELECT password_hash FROM users WHERE id = :id", id=user_id)
    [(time_cost,)] = server.sql("SELECT argon2_time_cost FROM pools WHERE id = :id", id=server.pool_id)
    assert f"t={time_cost}," in before
    server.sql("UPDATE pools SET argon2_time_cost = :t WHERE id = :id", t=time_cost + 1, id=server.pool_id)
    try:
        assert sign_in(client, server, email, STRONG)["statusCode"] == 200
        [(after,)] = server.sql("SELECT password_hash FROM users WHERE id = :id", id=user_id)
        assert f"t={time_cost + 1}," in after
    finally:
        server.sql("UPDATE pools SET argon2_time_cost = :t WHERE id = :id", t=time_cost, id=server.pool_id)
    assert sign_in(client, server, email, STRONG)["statusCode"] == 200


def test_jwks_and_discovery(server: RunningServer, client: httpx.Client, unique: str) -> None:
    jwks = client.get("/oidc/.well-known/jwks.json").json()
    assert jwks == client.get(f"/{server.app_id}/oidc/.well-known/jwks.json").json()
    assert all(k["kty"] == "RSA" and k["alg"] == "RS256" and "d" not in k for k in jwks["keys"])
    config = client.get("/oidc/.well-known/openid-configuration").json()
    assert config["issuer"].endswith("/oidc")
    assert config["jwks_uri"].endswith("/oidc/.well-known/jwks.json")
    email = f"jwks.{unique}@example.com"
    user_id = sign_up(client, email)
    access = sign_in(client, server, email, STRONG)["data"]["access_token"]
    kid = jwt.get_unverified_header(access)["kid"]
    key = jwt.PyJWK({k: v for k, v in next(k for k in jwks["keys"] if k["kid"] == kid).items()})
    claims = jwt.decode(access, key.key, algorithms=["RS256"], audience=server.app_id)
    assert claims["sub"] == user_id and claims["iss"] == config["issuer"] and claims["jti"]
    me = client.get("/oidc/me", headers={"authorization": "Bearer " + access}).json()
    assert me["sub"] == user_id


def test_bad_tokens_are_refused_with_envelopes(server: RunningServer, client: httpx.Client) -> None:
    for value in ("", "Bearer", "Bearer not.a.jwt", "garbage"):
        answer = client.get("/api/v3/get-profile", headers={"authorization": value})
        body = answer.json()
        assert body["statusCode"] == 401 and body["requestId"] and body["message"], (value, body)
    odd = client.post("/oidc/token", data={"grant_type": "password", "username": "x"})
    assert 400 <= odd.status_code < 500 and "error" in odd.json()
