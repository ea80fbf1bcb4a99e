"""POST /api/v3/signin and the token endpoints over HTTP, against real servers on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt

from tests.conformance.test_official_signin import official_client
from tests.http.test_signup import STRONG
from tests.support.codes import last_code_to, send_sms, trusted_headers
from tests.support.servers import RunningServer, keyhall


def sign_up(client: httpx.Client, email: str, password: str = STRONG) -> str:
    body = {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": password}}
    answer = client.post("/api/v3/signup", json=body).json()
    assert answer["statusCode"] == 200, answer
    return str(answer["data"]["userId"])


def sign_in(
    client: httpx.Client, email: str, password: str = STRONG, scope: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": password},
        **extra,
    }
    if scope is not None:
        body["options"] = {"scope": scope}
    return client.post("/api/v3/signin", json=body).json()  # type: ignore[no-any-return]


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


def test_twelve_wrong_passwords_then_the_right_one_is_refused_403_2005(
    client: httpx.Client, unique: str
) -> None:
    email = f"locked.{unique}@example.com"
    sign_up(client, email)
    answers = [sign_in(client, email, "wrong-password-1") for _ in range(12)]
    assert [a.get("apiCode") for a in answers[:10]] == [2333] * 10
    assert [(a["statusCode"], a.get("apiCode")) for a in answers[10:]] == [(403, 2005)] * 2
    right = sign_in(client, email)
    assert (right["statusCode"], right["apiCode"]) == (403, 2005)
    assert "data" not in right
    assert "retry in" in right["message"]


def test_unknown_accounts_lock_too_so_a_lock_reveals_nothing(client: httpx.Client, unique: str) -> None:
    email = f"nobody.locks.{unique}@example.com"
    codes = [sign_in(client, email, "whatever-pass").get("apiCode") for _ in range(11)]
    assert codes == [2333] * 10 + [2005]


def test_suspended_user_cannot_sign_in_but_a_wrong_password_still_says_2333(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"suspended.{unique}@example.com"
    user_id = sign_up(client, email)
    server.sql("UPDATE users SET status = 'Suspended' WHERE id = :id", id=user_id)
    refused = sign_in(client, email)
    assert refused["statusCode"] == 403
    assert "Suspended" in refused["message"]
    assert "data" not in refused
    assert sign_in(client, email, "wrong-password-2")["apiCode"] == 2333


def test_basic_header_client_credentials_and_wrong_ones(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"basic.{unique}@example.com"
    sign_up(client, email)
    basic = base64.b64encode(f"{server.app_id}:{server.app_secret}".encode()).decode()
    body = {"connection": "PASSWORD", "passwordPayload": {"account": email, "password": STRONG}}
    good = client.post("/api/v3/signin", json=body, headers={"authorization": f"Basic {basic}"}).json()
    assert good["statusCode"] == 200, good
    bad = sign_in(client, email, client_id=server.app_id, client_secret="not-the-secret")
    assert bad["statusCode"] == 401


def test_missing_identifier_and_unknown_connection_are_400(client: httpx.Client) -> None:
    empty = client.post(
        "/api/v3/signin", json={"connection": "PASSWORD", "passwordPayload": {"password": STRONG}}
    ).json()
    assert empty["statusCode"] == 400 and "passwordPayload" in empty["message"]
    ldap = client.post("/api/v3/signin", json={"connection": "LDAP"}).json()
    assert ldap["statusCode"] == 400 and "connection" in ldap["message"]


def test_reuse_of_a_rotated_refresh_token_revokes_its_family(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"rotate.{unique}@example.com"
    sign_up(client, email)
    first = sign_in(client, email, scope="openid offline_access")["data"]["refresh_token"]
    second = refresh(client, server, first).json()["refresh_token"]

    reused = refresh(client, server, first)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert reused.json()["requestId"]
    # The family is revoked: the newest token of the session no longer works either.
    after = refresh(client, server, second)
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    intro = client.post(
        "/oidc/token/introspection",
        data={"token": second, "client_id": server.app_id, "client_secret": server.app_secret},
    ).json()
    assert intro == {"active": False}


def test_token_endpoint_client_auth_basic_none_and_wrong(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"tokenauth.{unique}@example.com"
    sign_up(client, email)
    token = sign_in(client, email, scope="openid offline_access")["data"]["refresh_token"]
    wrong = client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": server.app_id},
        auth=(server.app_id, "wrong-secret"),
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    basic = client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(server.app_id, server.app_secret),
    )
    assert basic.status_code == 200, basic.text
    public = client.post(
        "/oidc/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": basic.json()["refresh_token"],
            "client_id": server.app_id,
        },
    )
    assert public.status_code == 200, public.text
    unsupported = client.post(
        "/oidc/token", data={"grant_type": "password", "client_id": server.app_id}
    ).json()
    assert unsupported["error"] == "unsupported_grant_type"


def test_oidc_me_and_discovery(server: RunningServer, client: httpx.Client, unique: str) -> None:
    email = f"me.{unique}@example.com"
    user_id = sign_up(client, email)
    access = sign_in(client, email, scope="openid email")["data"]["access_token"]
    me = httpx.get(f"{server.base_url}/oidc/me", headers={"authorization": f"Bearer {access}"})
    assert me.status_code == 200
    assert me.json()["sub"] == user_id and me.json()["email"] == email
    posted = httpx.post(f"{server.base_url}/oidc/me", data={"access_token": access})
    assert posted.json()["sub"] == user_id
    anonymous = httpx.get(f"{server.base_url}/oidc/me")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_token"

    config = httpx.get(f"{server.base_url}/oidc/.well-known/openid-configuration").json()
    assert config["issuer"] == f"{server.base_url}/oidc"
    jwks = httpx.get(config["jwks_uri"]).json()
    by_app = httpx.get(f"{server.base_url}/{server.app_id}/oidc/.well-known/jwks.json").json()
    assert jwks == by_app and jwks["keys"]
    assert all("d" not in key for key in jwks["keys"])  # public parts only


def test_a_token_of_another_app_is_refused(server: RunningServer, client: httpx.Client, unique: str) -> None:
    email = f"otherapp.{unique}@example.com"
    sign_up(client, email)
    access = sign_in(client, email)["data"]["access_token"]
    created = keyhall(
        "app", "create", "--name", f"other {unique}", "--database-url", server.database_url, "--json"
    )
    other = json.loads(created.stdout.strip().splitlines()[-1])["app_id"]
    answer = client.get(
        "/api/v3/get-profile", headers={"authorization": access, "x-genauth-app-id": other}
    ).json()
    assert answer["statusCode"] == 401 and "another application" in answer["message"]


def test_sign_in_by_email_code_uses_up_a_login_code(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"code.signin.{unique}@example.com"
    user_id = sign_up(client, email)
    headers = trusted_headers(server)
    sent = client.post(
        "/api/v3/send-email", json={"channel": "CHANNEL_LOGIN", "email": email}, headers=headers
    )
    assert sent.json()["statusCode"] == 200, sent.json()
    code = last_code_to(server, email)
    body = {"connection": "PASSCODE", "passCodePayload": {"email": email.upper(), "passCode": code}}
    not_it = "000000" if code != "000000" else "111111"
    wrong = client.post(
        "/api/v3/signin", json={**body, "passCodePayload": {"email": email, "passCode": not_it}}
    ).json()
    assert (wrong["statusCode"], wrong["apiCode"]) == (400, 2001)
    answer = client.post("/api/v3/signin", json=body).json()
    assert answer["statusCode"] == 200, answer
    profile = client.get("/api/v3/get-profile", headers={"authorization": answer["data"]["access_token"]})
    assert profile.json()["data"]["userId"] == user_id
    again = client.post("/api/v3/signin", json=body).json()
    assert (again["statusCode"], again["apiCode"]) == (400, 2300)


def test_sign_in_by_phone_and_by_account_as_a_phone(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    phone = f"136{int(unique[:8], 16) % 10**8:08d}"
    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": f"phone.{unique}@example.com", "password": STRONG},
        "profile": {"phone": phone, "phoneCountryCode": "+86"},
    }
    created = client.post("/api/v3/signup", json=body).json()
    assert created["statusCode"] == 200, created
    user_id = created["data"]["userId"]
    for payload in (
        {"phone": phone, "phoneCountryCode": "+86"},
        {"phone": phone},  # the default country, as GenAuth's SDKs send it
        {"phone": f"+86{phone}"},
        {"account": phone},
    ):
        answer = client.post(
            "/api/v3/signin",
            json={"connection": "PASSWORD", "passwordPayload": {**payload, "password": STRONG}},
        ).json()
        assert answer["statusCode"] == 200, (payload, answer)
        profile = client.get("/api/v3/get-profile", headers={"authorization": answer["data"]["access_token"]})
        assert profile.json()["data"]["userId"] == user_id
    wrong = client.post(
        "/api/v3/signin",
        json={"connection": "PASSWORD", "passwordPayload": {"phone": phone, "password": STRONG + "x"}},
    ).json()
    assert (wrong["statusCode"], wrong["apiCode"]) == (403, 2333)


def test_users_not_activated_cannot_sign_in(server: RunningServer, client: httpx.Client, unique: str) -> None:
    for status in ("Suspended", "Deactivated", "Resigned", "Archived"):
        email = f"{status.lower()}.status.{unique}@example.com"
        user_id = sign_up(client, email)
        server.sql("UPDATE users SET status = :s WHERE id = :id", s=status, id=user_id)
        refused = sign_in(client, email)
        assert refused["statusCode"] == 403 and status in refused["message"], refused
        assert "data" not in refused
        assert sign_in(client, email, "wrong-password-3")["apiCode"] == 2333


def test_sign_in_records_the_login_and_answers_every_token_field(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"record.{unique}@example.com"
    sign_up(client, email)
    answer = client.post(
        "/api/v3/signin",
        json={
            "connection": "PASSWORD",
            "passwordPayload": {"email": email, "password": STRONG},
            "options": {"scope": "openid profile offline_access", "clientIp": "203.0.113.7"},
            "client_id": server.app_id,
            "client_secret": server.app_secret,
        },
    ).json()
    tokens = answer["data"]
    assert set(tokens) == {
        "access_token",
        "id_token",
        "refresh_token",
        "token_type",
        "expire_in",
        "expires_in",
        "scope",
    }, tokens
    assert tokens["token_type"] == "Bearer" and tokens["expire_in"] == tokens["expires_in"] == 7200
    user = client.get("/api/v3/get-profile", headers={"authorization": tokens["access_token"]}).json()["data"]
    assert (user["loginsCount"], user["lastIp"], user["lastLoginApp"]) == (1, "203.0.113.7", server.app_id)
    assert user["lastLogin"] is not None


def test_failures_from_one_client_address_are_capped(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    ip = f"198.51.{int(unique[:4], 16) % 256}.{int(unique[4:6], 16) % 254 + 1}"
    emails = [f"ipcap{n}.{unique}@example.com" for n in range(4)]
    for email in emails:
        sign_up(client, email)

    def from_ip(email: str, password: str, address: str = ip) -> dict[str, Any]:
        trusted = {"client_id": server.app_id, "client_secret": server.app_secret}
        body = {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": password}}
        answer = client.post("/api/v3/signin", json={**body, **trusted, "options": {"clientIp": address}})
        return answer.json()  # type: ignore[no-any-return]

    server.sql("UPDATE pools SET signin_max_failures_per_ip = 3 WHERE id = :id", id=server.pool_id)
    try:
        wrong = [from_ip(email, "wrong-password-4").get("apiCode") for email in emails[:3]]
        capped = from_ip(emails[3], STRONG)
        elsewhere = from_ip(emails[3], STRONG, address="192.0.2.77")
    finally:
        server.sql("UPDATE pools SET signin_max_failures_per_ip = 100 WHERE id = :id", id=server.pool_id)
    assert wrong == [2333] * 3  # three accounts, one failure each: no account is locked
    assert (capped["statusCode"], capped.get("apiCode")) == (429, 2100), capped
    assert "data" not in capped
    assert elsewhere["statusCode"] == 200, elsewhere


def test_sign_in_by_phone_code(server: RunningServer, client: httpx.Client, unique: str) -> None:
    phone = f"134{int(unique[:8], 16) % 10**8:08d}"
    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": f"smslogin.{unique}@example.com", "password": STRONG},
        "profile": {"phone": phone},
    }
    user_id = client.post("/api/v3/signup", json=body).json()["data"]["userId"]
    assert send_sms(client, server, phone, channel="CHANNEL_LOGIN")["statusCode"] == 200
    code = last_code_to(server, f"+86{phone}")
    official = official_client("genauth", server)
    wrong = official.sign_in_by_phone_passcode(phone, f"{(int(code) + 1) % 10**6:06d}", "+86")
    assert (wrong["statusCode"], wrong["apiCode"]) == (400, 2001), wrong
    answer = official.sign_in_by_phone_passcode(phone, code, "+86")
    assert answer["statusCode"] == 200, answer
    assert official.introspect_token_offline(answer["data"]["access_token"])["sub"] == user_id
    again = official.sign_in_by_phone_passcode(phone, code, "+86")
    assert (again["statusCode"], again["apiCode"]) == (400, 2300), again


def test_default_token_lifetimes_and_the_refresh_token_stored_as_its_sha256(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    email = f"lifetimes.{unique}@example.com"
    sign_up(client, email)
    tokens = sign_in(client, email, scope="openid offline_access")["data"]
    for token in (tokens["access_token"], tokens["id_token"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 7200, claims
    digest = hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()
    [(created, expires)] = server.sql(
        "SELECT created_at, expires_at FROM refresh_tokens WHERE token_sha256 = :d", d=digest
    )
    assert _moment(expires) - _moment(created) == timedelta(days=30)
    assert not server.sql("SELECT id FROM refresh_tokens WHERE token_sha256 = :t", t=tokens["refresh_token"])


def _moment(value: Any) -> datetime:
    """A timestamp column's value: a datetime from PostgreSQL, its text from SQLite (UTC either way)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=None)
