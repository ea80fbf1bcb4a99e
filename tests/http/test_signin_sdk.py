"""Keyhall's own SDK, sync and async: sign-in keeps the token, profile, refresh, introspection, revoke."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jwt
import pytest

from keyhall import AsyncAuthenticationClient, AuthenticationClient
from tests.http.test_signup import STRONG
from tests.support.servers import RunningServer

OTHER = "An0ther-Correct-Horse-Battery"


def test_sync_client_signs_in_and_uses_its_tokens(server: RunningServer, unique: str) -> None:
    with AuthenticationClient(server.app_id, server.base_url, server.app_secret) as client:
        email = f"kh.sdk.{unique}@example.com"
        user_id = client.sign_up_by_email_password(email, STRONG)["data"]["userId"]
        answer = client.sign_in_by_email_password(email, STRONG, {"scope": "openid offline_access"})
        assert answer["statusCode"] == 200, answer
        tokens = answer["data"]
        assert client.get_profile()["data"]["userId"] == user_id  # the client kept the token
        assert client.introspect_token_offline(tokens["access_token"])["sub"] == user_id
        updated = client.update_profile(nickname="Ada")
        assert updated["statusCode"] == 200 and updated["data"]["nickname"] == "Ada", updated
        refreshed = client.get_new_access_token_by_refresh_token(tokens["refresh_token"])
        assert refreshed["access_token"] != tokens["access_token"]
        assert client.introspect_token(refreshed["access_token"])["active"] is True
        assert client.update_password(OTHER, STRONG)["statusCode"] == 200
        assert client.sign_in_by_account_password(email, OTHER)["statusCode"] == 200
        assert client.revoke_token(client.settings.access_token or "") is True
        assert client.get_profile()["statusCode"] == 401
        with pytest.raises(jwt.InvalidTokenError):
            client.introspect_token_offline(tokens["access_token"][:-4] + "AAAA")
        assert client.sign_in_by_username_password("nobody" + unique, STRONG)["apiCode"] == 2333


async def test_async_client_signs_in_and_refreshes(server: RunningServer, unique: str) -> None:
    async with AsyncAuthenticationClient(
        server.app_id, server.base_url, server.app_secret, password_encrypt_type="rsa"
    ) as client:
        email = f"kh.async.{unique}@example.com"
        user_id = (await client.sign_up_by_email_password(email, STRONG))["data"]["userId"]
        answer = await client.sign_in_by_email_password(email, STRONG, {"scope": "openid offline_access"})
        assert answer["statusCode"] == 200, answer
        assert (await client.get_profile(with_identities=True))["data"]["userId"] == user_id
        claims = await client.introspect_token_offline(answer["data"]["access_token"])
        assert claims["sub"] == user_id and claims["aud"] == server.app_id
        refreshed = await client.get_new_access_token_by_refresh_token(answer["data"]["refresh_token"])
        assert (await client.introspect_token(refreshed["access_token"]))["sub"] == user_id


def test_clients_without_the_app_secret_sign_in(server: RunningServer, unique: str) -> None:
    # A public client (no secret) sends no client credentials at all; the server would also take a
    # client_id alone (a public client, as the official SDKs send it), just not trust it for clientIp.
    email = f"kh.public.{unique}@example.com"
    with AuthenticationClient(server.app_id, server.base_url) as client:
        user_id = client.sign_up_by_email_password(email, STRONG)["data"]["userId"]
        answer = client.sign_in_by_email_password(email, STRONG)
        assert answer["statusCode"] == 200, answer
        assert client.get_profile()["data"]["userId"] == user_id

    async def async_sign_in() -> dict[str, object]:
        async with AsyncAuthenticationClient(server.app_id, server.base_url) as aclient:
            return await aclient.sign_in_by_account_password(email, STRONG)

    answer = asyncio.run(async_sign_in())
    assert answer["statusCode"] == 200, answer


def test_sync_sign_in_by_credentials_with_a_scope(server: RunningServer, unique: str) -> None:
    with AuthenticationClient(server.app_id, server.base_url, server.app_secret) as client:
        email = f"kh.cred.{unique}@example.com"
        user_id = client.sign_up_by_email_password(email, STRONG)["data"]["userId"]
        answer = client.sign_in_by_credentials(
            "PASSWORD", {"email": email.upper(), "password": STRONG}, options={"scope": "openid"}
        )
        assert answer["statusCode"] == 200, answer
        assert "id_token" in answer["data"] and "refresh_token" not in answer["data"]
        assert client.settings.access_token == answer["data"]["access_token"]
        assert client.get_profile()["data"]["userId"] == user_id


async def test_async_client_every_sign_in_and_account_method(server: RunningServer, unique: str) -> None:
    async with AsyncAuthenticationClient(server.app_id, server.base_url, server.app_secret) as client:
        email, username = f"kh.async.all.{unique}@example.com", f"kh_async_{unique}"
        user_id = (await client.sign_up_by_email_password(email, STRONG))["data"]["userId"]
        await client.sign_up_by_username_password(username, STRONG)
        by_username = await client.sign_in_by_username_password(username.upper(), STRONG)
        assert by_username["statusCode"] == 200, by_username
        by_account = await client.sign_in_by_account_password(email, STRONG)
        assert by_account["statusCode"] == 200, by_account
        answer = await client.sign_in_by_credentials(
            "PASSWORD", {"email": email, "password": STRONG}, options={"scope": "openid offline_access"}
        )
        assert answer["statusCode"] == 200 and answer["data"]["refresh_token"], answer
        assert client.settings.access_token == answer["data"]["access_token"]  # kept after sign-in
        updated = await client.update_profile(nickname="Async Ada")
        assert updated["statusCode"] == 200 and updated["data"]["nickname"] == "Async Ada", updated
        wrong_old = await client.update_password(OTHER, STRONG + "x")
        assert (wrong_old["statusCode"], wrong_old["apiCode"]) == (403, 2006), wrong_old
        assert (await client.update_password(OTHER, STRONG))["statusCode"] == 200
        assert (await client.sign_in_by_email_password(email, STRONG))["apiCode"] == 2333
        assert (await client.sign_in_by_email_password(email, OTHER))["statusCode"] == 200
        access = client.settings.access_token or ""
        assert (await client.get_profile())["data"]["userId"] == user_id
        assert await client.revoke_token(access) is True
        assert await client.introspect_token(access) == {"active": False}
        assert (await client.get_profile())["statusCode"] == 401


@pytest.mark.parametrize("kind", ["rsa", "sm2"])
def test_update_password_is_encrypted_by_both_clients(server: RunningServer, kind: str, unique: str) -> None:
    sent: list[dict[str, object]] = []

    def record(request: httpx.Request) -> None:
        if request.url.path == "/api/v3/update-password":
            sent.append(json.loads(request.content))

    email = f"kh.uppw.{kind}.{unique}@example.com"
    http = httpx.Client(event_hooks={"request": [record]}, timeout=30)
    with AuthenticationClient(
        server.app_id, server.base_url, server.app_secret, password_encrypt_type=kind, http_client=http
    ) as client:
        client.sign_up_by_email_password(email, STRONG)
        assert client.sign_in_by_email_password(email, STRONG)["statusCode"] == 200
        changed = client.update_password(OTHER, STRONG)
        assert changed["statusCode"] == 200, changed
    http.close()
    assert sent[0]["passwordEncryptType"] == kind
    assert OTHER not in json.dumps(sent[0]) and STRONG not in json.dumps(sent[0])

    async def async_change() -> dict[str, object]:
        async_http = httpx.AsyncClient(event_hooks={"request": [_async(record)]}, timeout=30)
        async with AsyncAuthenticationClient(
            server.app_id, server.base_url, server.app_secret, http_client=async_http
        ) as aclient:
            assert (await aclient.sign_in_by_email_password(email, OTHER))["statusCode"] == 200
            answer = await aclient.update_password(STRONG, OTHER, password_encrypt_type=kind)
        await async_http.aclose()
        return answer

    answer = asyncio.run(async_change())
    assert answer["statusCode"] == 200, answer
    assert sent[1]["passwordEncryptType"] == kind and STRONG not in json.dumps(sent[1])
    with AuthenticationClient(server.app_id, server.base_url, server.app_secret) as client:
        assert client.sign_in_by_email_password(email, STRONG)["statusCode"] == 200  # decrypted right


def _async(hook: Any) -> Any:
    async def wrapped(request: httpx.Request) -> None:
        hook(request)

    return wrapped
