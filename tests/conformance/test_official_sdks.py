"""The official genauth and authing 5.1.0 SDKs, unchanged, pointed at Keyhall with app_host."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from tests.http.test_signup import FULL_PROFILE, STRONG
from tests.support.servers import RunningServer

SDKS = ["genauth", "authing"]


def official_client(sdk: str, server: RunningServer, **kwargs: Any) -> Any:
    module = importlib.import_module(sdk)
    return module.AuthenticationClient(
        app_id=server.app_id,
        app_secret=server.app_secret,
        app_host=server.base_url,
        redirect_uri=f"{server.base_url}/callback",
        **kwargs,
    )


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_registers_by_email_with_profile(server: RunningServer, sdk: str, unique: str) -> None:
    client = official_client(sdk, server)
    email = f"Official.{sdk}.{unique}@Example.com"
    answer = client.sign_up_by_email_password(
        email=email,
        password=STRONG,
        profile={k: v for k, v in FULL_PROFILE.items() if k != "phone"},
        options={"context": {"source": sdk}},
    )
    assert answer["statusCode"] == 200, answer
    user = answer["data"]
    assert user["email"] == email
    assert user["nickname"] == "Mike"
    assert user["birthdate"] == "2020-02-02"
    assert user["customData"] == {"name": "H", "nested": {"a": [1, 2]}, "source": sdk}


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_registers_by_username(server: RunningServer, sdk: str, unique: str) -> None:
    client = official_client(sdk, server, lang="en-US")
    answer = client.sign_up_by_username_password(
        username=f"{sdk}_{unique}", password=STRONG, profile={"nickname": "N", "gender": "F"}
    )
    assert answer["statusCode"] == 200, answer
    assert answer["data"]["username"] == f"{sdk}_{unique}"
    assert answer["data"]["gender"] == "F"


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_sees_duplicates_as_409(server: RunningServer, sdk: str, unique: str) -> None:
    client = official_client(sdk, server)
    assert client.sign_up_by_email_password(f"twice.{unique}@example.com", STRONG)["statusCode"] == 200
    again = client.sign_up_by_email_password(f"TWICE.{unique}@example.com", STRONG)
    assert (again["statusCode"], again["apiCode"]) == (409, 2026)

    assert client.sign_up_by_username_password(f"Twice{unique}", STRONG)["statusCode"] == 200
    again = client.sign_up_by_username_password(f"twice{unique}", STRONG)
    assert (again["statusCode"], again["apiCode"]) == (409, 2034)


@pytest.mark.parametrize("sdk", SDKS)
def test_official_sdk_gets_error_envelopes(server: RunningServer, sdk: str) -> None:
    client = official_client(sdk, server, lang="zh-CN")
    weak = client.sign_up_by_email_password("weak@example.com", "123456")
    assert (weak["statusCode"], weak["apiCode"]) == (400, 2029)
    assert "密码" in weak["message"]
    missing = client.sign_up_by_email_password("nopass@example.com", "")
    assert (missing["statusCode"], missing["apiCode"]) == (400, 2032)
