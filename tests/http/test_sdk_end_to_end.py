"""keyhall.AuthenticationClient and AsyncAuthenticationClient against a real server, with encryption."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from keyhall import AsyncAuthenticationClient, AuthenticationClient, KeyhallConnectionError
from tests.http.test_signup import STRONG
from tests.support.servers import RunningServer, free_port


def sdk(server: RunningServer, **kwargs: object) -> AuthenticationClient:
    return AuthenticationClient(
        app_id=server.app_id,
        app_secret=server.app_secret,
        app_host=server.base_url,
        **kwargs,  # type: ignore[arg-type]
    )


def test_sync_client_registers_by_email_and_username(server: RunningServer, unique: str) -> None:
    with sdk(server) as client:
        by_email = client.sign_up_by_email_password(
            f"sdk.{unique}@example.com", STRONG, profile={"nickname": "S"}
        )
        by_name = client.sign_up_by_username_password(f"sdk_{unique}", STRONG)
        generic = client.sign_up(
            "PASSWORD", password_payload={"email": f"generic.{unique}@example.com", "password": STRONG}
        )
    assert by_email["statusCode"] == 200 and by_email["data"]["nickname"] == "S"
    assert by_name["statusCode"] == 200 and by_name["data"]["username"] == f"sdk_{unique}"
    assert generic["statusCode"] == 200


def test_async_client_registers(server: RunningServer, unique: str) -> None:
    async def main() -> list[dict[str, object]]:
        async with AsyncAuthenticationClient(app_id=server.app_id, app_host=server.base_url) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.sign_up_by_email_password(f"async{i}.{unique}@example.com", STRONG)
                        for i in range(5)
                    )
                )
            )

    answers = asyncio.run(main())
    assert [a["statusCode"] for a in answers] == [200] * 5


@pytest.mark.parametrize("kind", ["rsa", "sm2"])
def test_encrypted_password_is_decrypted_by_the_server(server: RunningServer, kind: str, unique: str) -> None:
    email = f"enc.{kind}.{unique}@example.com"
    with sdk(server, password_encrypt_type=kind) as client:
        answer = client.sign_up_by_email_password(email, "Ünïcode-Pässword-42")
    assert answer["statusCode"] == 200, answer
    assert answer["data"]["passwordSecurityLevel"] == 3
    stored = server.sql("SELECT password_hash FROM users WHERE email_norm = :e", e=email)[0][0]
    assert stored.startswith("$argon2id$")


@pytest.mark.parametrize("kind", ["rsa", "sm2"])
def test_pre_encrypted_password_like_the_official_sdk(server: RunningServer, kind: str, unique: str) -> None:
    with sdk(server) as client:
        ciphertext = client.encrypt_password(STRONG, kind)

    def sign_up(email: str, encrypt_type: str) -> dict[str, object]:
        body = {
            "connection": "PASSWORD",
            "passwordPayload": {"email": email, "password": ciphertext},
            "options": {"passwordEncryptType": encrypt_type},
        }
        headers = {"x-genauth-app-id": server.app_id}
        return httpx.post(f"{server.base_url}/api/v3/signup", json=body, headers=headers).json()  # type: ignore[no-any-return]

    answer = sign_up(f"pre.{kind}.{unique}@example.com", kind)
    assert answer["statusCode"] == 200, answer
    wrong_kind = sign_up(f"pre2.{kind}.{unique}@example.com", "sm2" if kind == "rsa" else "rsa")
    assert (wrong_kind["statusCode"], wrong_kind["apiCode"]) == (499, 2016)


def test_system_endpoint_publishes_the_keys(server: RunningServer) -> None:
    with sdk(server) as client:
        info = client.get_system_info()
    assert info["rsa"]["publicKey"].startswith("-----BEGIN PUBLIC KEY-----")
    assert len(info["sm2"]["publicKey"]) == 130 and info["sm2"]["publicKey"].startswith("04")
    assert "statusCode" not in info


def test_unreachable_server_raises_a_connection_error() -> None:
    port = free_port()
    with AuthenticationClient(app_id="a", app_host=f"http://127.0.0.1:{port}", timeout=2) as client:
        with pytest.raises(KeyhallConnectionError, match=str(port)):
            client.sign_up_by_email_password("x@example.com", STRONG)


def test_no_password_or_hash_reaches_the_log(server: RunningServer, unique: str) -> None:
    secret_password = f"Never-Logged-{unique}-Pw9"
    with sdk(server) as client:
        ok = client.sign_up_by_email_password(f"quiet.{unique}@example.com", secret_password)
        weak = client.sign_up_by_email_password(f"quiet2.{unique}@example.com", "password")
        sm2 = httpx.post(
            f"{server.base_url}/api/v3/signup",
            headers={"x-genauth-app-id": server.app_id},
            json={
                "connection": "PASSWORD",
                "passwordPayload": {
                    "email": f"quiet3.{unique}@example.com",
                    "password": "deadbeef" + secret_password,
                },
                "options": {"passwordEncryptType": "sm2"},
            },
        ).json()
    assert ok["statusCode"] == 200 and weak["apiCode"] == 2029 and sm2["apiCode"] == 2016
    stored_hash = server.sql("SELECT password_hash FROM users WHERE id = :i", i=ok["data"]["userId"])[0][0]
    log = server.log_text()
    assert ok["requestId"] in log and weak["requestId"] in log and sm2["requestId"] in log
    assert secret_password not in log
    assert stored_hash not in log
    assert "$argon2" not in log
    assert server.app_secret not in log
    for answer in (ok, weak, sm2):
        assert secret_password not in str(answer)
        assert "argon2" not in str(answer)
