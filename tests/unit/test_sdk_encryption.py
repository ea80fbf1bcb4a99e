"""The SDK encrypts plaintext passwords itself: per call (``options.passwordEncryptType``) or per client,
and fetches the public keys again (retrying once) when the server answers 499/2016 after a rotation."""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import httpx
import pytest

from tests.unit.test_sdk_request import OK, SYSTEM_INFO, Recorder, async_client, sync_client

DECRYPT_FAILED = {"statusCode": 499, "apiCode": 2016, "message": "cannot decrypt", "requestId": "r2"}


@pytest.fixture
def fake_encryption(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Stand in for keyhall.sdk._encryption; returns the (password, type, key) calls it received."""
    calls: list[tuple[str, str, str]] = []

    def encrypt_password(password: str, encrypt_type: str, public_key: str) -> str:
        calls.append((password, encrypt_type, public_key))
        return f"enc[{encrypt_type}:{public_key}]({password})"

    module = types.ModuleType("keyhall.sdk._encryption")
    module.encrypt_password = encrypt_password  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyhall.sdk._encryption", module)
    return calls


class RotatingServer:
    """Answers /system with the current keys and 499/2016 to a sign-up encrypted with any other key."""

    def __init__(self) -> None:
        self.generation = 1
        self.recorder = Recorder()

    def keys(self) -> dict[str, Any]:
        return {
            "rsa": {"publicKey": f"RSA-{self.generation}"},
            "sm2": {"publicKey": f"04{self.generation:02d}"},
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.recorder(request)
        if request.url.path == "/api/v3/system":
            return httpx.Response(200, json=self.keys())
        password = json.loads(request.content)["passwordPayload"]["password"]
        current = {entry["publicKey"] for entry in self.keys().values()}
        used = password[password.index(":") + 1 : password.index("]")]
        return httpx.Response(200, json=OK if used in current else DECRYPT_FAILED)


@pytest.mark.parametrize("kind", ["rsa", "sm2"])
def test_call_option_encrypts_a_plain_password(fake_encryption: list[Any], kind: str) -> None:
    recorder = Recorder({"/api/v3/system": (200, json.dumps(SYSTEM_INFO).encode())})
    client = sync_client(recorder)
    client.sign_up_by_email_password("a@example.com", "plain", options={"passwordEncryptType": kind})
    key = SYSTEM_INFO[kind]["publicKey"]  # type: ignore[index]
    assert fake_encryption == [("plain", kind, key)]
    assert recorder.body()["passwordPayload"]["password"] == f"enc[{kind}:{key}](plain)"
    assert recorder.body()["options"] == {"passwordEncryptType": kind}


def test_call_option_none_sends_the_password_as_given(fake_encryption: list[Any]) -> None:
    recorder = Recorder()
    client = sync_client(recorder, password_encrypt_type="sm2")
    client.sign_up_by_email_password("a@example.com", "plain", options={"passwordEncryptType": "none"})
    assert recorder.paths() == ["/api/v3/signup"]
    assert recorder.body()["passwordPayload"]["password"] == "plain"
    assert fake_encryption == []


def test_unknown_call_option_is_refused_before_sending(fake_encryption: list[Any]) -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="rsa, sm2"):
        sync_client(recorder).sign_up_by_email_password(
            "a@example.com", "plain", options={"passwordEncryptType": "aes"}
        )
    assert recorder.requests == []


def test_sync_client_refetches_keys_once_after_a_rotation(fake_encryption: list[Any]) -> None:
    server = RotatingServer()
    client = sync_client(server.recorder, password_encrypt_type="rsa")
    client._http = httpx.Client(transport=httpx.MockTransport(server))
    assert client.sign_up_by_email_password("a@example.com", "pw")["statusCode"] == 200
    server.generation = 2
    answer = client.sign_up_by_email_password("b@example.com", "pw", options={"passwordEncryptType": "rsa"})
    assert answer["statusCode"] == 200
    assert server.recorder.paths() == [
        "/api/v3/system",
        "/api/v3/signup",
        "/api/v3/signup",  # refused: encrypted with RSA-1
        "/api/v3/system",
        "/api/v3/signup",  # retried with RSA-2
    ]
    assert [call[2] for call in fake_encryption] == ["RSA-1", "RSA-1", "RSA-2"]
    client.sign_up_by_email_password("c@example.com", "pw")
    assert server.recorder.paths().count("/api/v3/system") == 2  # the new key is cached


def test_a_2016_with_unchanged_keys_is_returned_without_a_retry(fake_encryption: list[Any]) -> None:
    recorder = Recorder(
        {
            "/api/v3/system": (200, json.dumps(SYSTEM_INFO).encode()),
            "/api/v3/signup": (200, json.dumps(DECRYPT_FAILED).encode()),
        }
    )
    answer = sync_client(recorder, password_encrypt_type="sm2").sign_up_by_email_password("a@b.c", "pw")
    assert answer == DECRYPT_FAILED
    assert recorder.paths() == ["/api/v3/system", "/api/v3/signup", "/api/v3/system"]


async def test_async_client_refetches_keys_once_after_a_rotation(fake_encryption: list[Any]) -> None:
    server = RotatingServer()
    async with async_client(server) as client:
        assert (
            await client.sign_up_by_email_password(
                "a@example.com", "pw", options={"passwordEncryptType": "sm2"}
            )
        )["statusCode"] == 200
        server.generation = 2
        answer = await client.sign_up_by_email_password(
            "b@example.com", "pw", options={"passwordEncryptType": "sm2"}
        )
    assert answer["statusCode"] == 200
    assert server.recorder.paths() == [
        "/api/v3/system",
        "/api/v3/signup",
        "/api/v3/signup",
        "/api/v3/system",
        "/api/v3/signup",
    ]
    assert [call[2] for call in fake_encryption] == ["0401", "0401", "0402"]
