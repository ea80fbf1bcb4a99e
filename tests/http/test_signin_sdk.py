"""Keyhall's own SDK, sync and async: sign-in keeps the token, profile, refresh, introspection, revoke."""

from __future__ import annotations

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
