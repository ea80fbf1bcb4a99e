"""The official genauth and authing 5.1.0 SDKs, unchanged: sign in, profile, tokens, refresh, revoke."""

from __future__ import annotations

import importlib
from typing import Any

import httpx
import jwt
import pytest

from tests.http.test_signup import STRONG
from tests.support.codes import last_code_to, send_email
from tests.support.servers import RunningServer

SDKS = ["genauth", "authing"]


def official_client(sdk: str, server: RunningServer, **kwargs: Any) -> Any:
    module = importlib.import_module(sdk)
    return module.AuthenticationClient(
        app_id=server.app_id, app_secret=server.app_secret, app_host=server.base_url, **kwargs
    )


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_signs_in_reads_profile_and_refreshes(
    server: RunningServer, sdk: str, unique: str
) -> None:
    client = official_client(sdk, server)
    email = f"Sign.In.{sdk}.{unique}@Example.com"
    signed_up = client.sign_up_by_email_password(email, STRONG)
    assert signed_up["statusCode"] == 200, signed_up
    user_id = signed_up["data"]["userId"]

    answer = client.sign_in_by_email_password(
        email.upper(), STRONG, options={"scope": "openid profile email offline_access"}
    )
    assert answer["statusCode"] == 200, answer
    tokens = answer["data"]
    assert tokens["token_type"] == "Bearer"
    assert tokens["expire_in"] == tokens["expires_in"] == 7200
    assert tokens["scope"] == "openid profile email offline_access"
    assert tokens["refresh_token"] and tokens["id_token"]

    payload = client.introspect_token_offline(tokens["access_token"])
    assert payload["sub"] == user_id
    assert payload["aud"] == server.app_id
    assert payload["iss"] == f"{server.base_url}/oidc"
    assert "openid" in payload["scope"]
    assert payload["exp"] - payload["iat"] == 7200
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    id_claims = client.introspect_token_offline(tokens["id_token"])
    assert id_claims["sub"] == user_id
    assert id_claims["email"] == email

    client.set_access_token(tokens["access_token"])
    profile = client.get_profile(with_custom_data=True)
    assert profile["statusCode"] == 200, profile
    assert profile["data"]["userId"] == user_id
    assert profile["data"]["loginsCount"] == 1
    assert profile["data"]["lastLoginApp"] == server.app_id
    assert profile["data"]["lastLogin"] is not None
    assert profile["data"]["customData"] == {}

    client.set_access_token("Bearer " + tokens["access_token"])
    assert client.get_profile()["data"]["userId"] == user_id

    refreshed = client.get_new_access_token_by_refresh_token(tokens["refresh_token"])
    assert refreshed["access_token"] != tokens["access_token"], refreshed
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert client.introspect_token_offline(refreshed["access_token"])["sub"] == user_id

    online = client.introspect_token(refreshed["access_token"])
    assert online["active"] is True and online["sub"] == user_id
    assert client.revoke_token(refreshed["access_token"]) is True
    assert client.introspect_token(refreshed["access_token"]) == {"active": False}
    client.set_access_token(refreshed["access_token"])
    assert client.get_profile()["statusCode"] == 401


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_signs_in_by_username_and_by_account(
    server: RunningServer, sdk: str, unique: str
) -> None:
    client = official_client(sdk, server)
    username = f"{sdk}_acct_{unique}"
    email = f"acct.{sdk}.{unique}@example.com"
    assert client.sign_up_by_email_password(email, STRONG)["statusCode"] == 200
    named = official_client(sdk, server).sign_up_by_username_password(username, STRONG)
    assert named["statusCode"] == 200, named

    by_username = client.sign_in_by_username_password(username.upper(), STRONG)
    assert by_username["statusCode"] == 200, by_username
    assert "refresh_token" not in by_username["data"]  # no offline_access
    assert "id_token" in by_username["data"]  # default scope "openid profile"
    by_account = client.sign_in_by_account_password(username, STRONG)
    assert by_account["statusCode"] == 200, by_account
    by_account_email = client.sign_in_by_account_password(email, STRONG, options={"scope": "profile"})
    assert by_account_email["statusCode"] == 200
    assert "id_token" not in by_account_email["data"]  # no openid, no id_token
    assert (
        client.introspect_token_offline(by_account["data"]["access_token"])["sub"] == named["data"]["userId"]
    )


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_without_the_app_secret_signs_in_as_a_public_client(
    server: RunningServer, sdk: str, unique: str
) -> None:
    # Made without app_secret, the SDK still sends client_id (the app id) and no client_secret.
    public = importlib.import_module(sdk).AuthenticationClient(app_id=server.app_id, app_host=server.base_url)
    email = f"public.{sdk}.{unique}@example.com"
    assert public.sign_up_by_email_password(email, STRONG)["statusCode"] == 200
    signed = public.sign_in_by_email_password(email, STRONG)
    assert signed["statusCode"] == 200, signed
    assert public.introspect_token_offline(signed["data"]["access_token"])["sub"]
    # A client_id of another app, or a wrong secret, is still refused.
    other = importlib.import_module(sdk).AuthenticationClient(
        app_id=server.app_id, app_secret="not-the-secret", app_host=server.base_url
    )
    assert other.sign_in_by_email_password(email, STRONG)["statusCode"] == 401


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_wrong_password_and_unknown_user_look_the_same(
    server: RunningServer, sdk: str, unique: str
) -> None:
    client = official_client(sdk, server)
    email = f"same.{sdk}.{unique}@example.com"
    assert client.sign_up_by_email_password(email, STRONG)["statusCode"] == 200
    wrong = client.sign_in_by_email_password(email, STRONG + "x")
    unknown = client.sign_in_by_email_password(f"nobody.{sdk}.{unique}@example.com", STRONG)
    assert wrong["statusCode"] == 403 and wrong["apiCode"] == 2333
    assert {k: v for k, v in wrong.items() if k != "requestId"} == {
        k: v for k, v in unknown.items() if k != "requestId"
    }


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_signs_in_with_an_email_login_code(
    server: RunningServer, client: httpx.Client, sdk: str, unique: str
) -> None:
    official = official_client(sdk, server)
    email = f"code.{sdk}.{unique}@example.com"
    user_id = official.sign_up_by_email_password(email, STRONG)["data"]["userId"]
    assert send_email(client, server, email, channel="CHANNEL_LOGIN")["statusCode"] == 200
    code = last_code_to(server, email)
    wrong = official.sign_in_by_email_passcode(email, f"{(int(code) + 1) % 10**6:06d}")
    assert wrong["statusCode"] == 400 and wrong["apiCode"] == 2001, wrong
    answer = official.sign_in_by_email_passcode(email.upper(), code)
    assert answer["statusCode"] == 200, answer
    assert official.introspect_token_offline(answer["data"]["access_token"])["sub"] == user_id
    again = official.sign_in_by_email_passcode(email, code)
    assert again["statusCode"] == 400 and again["apiCode"] == 2300, again


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_signs_in_by_phone_and_changes_the_password(
    server: RunningServer, sdk: str, unique: str
) -> None:
    client = official_client(sdk, server)
    phone = f"135{int(unique[:8], 16) % 10**8:08d}"
    email = f"phone.{sdk}.{unique}@example.com"
    signed_up = client.sign_up_by_email_password(email, STRONG, profile={"phone": phone})
    assert signed_up["statusCode"] == 200, signed_up
    answer = client.sign_in_by_phone_password(phone, STRONG)
    assert answer["statusCode"] == 200, answer
    assert (
        client.introspect_token_offline(answer["data"]["access_token"])["sub"] == signed_up["data"]["userId"]
    )
    client.set_access_token(answer["data"]["access_token"])
    new = "Green-Meadow-4-Compass"
    assert client.update_password(new, STRONG)["statusCode"] == 200
    assert client.sign_in_by_phone_password(phone, STRONG)["apiCode"] == 2333
    assert client.sign_in_by_account_password(phone, new)["statusCode"] == 200
