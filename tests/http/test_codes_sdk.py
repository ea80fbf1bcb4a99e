"""send_email / send_sms / sign_up_by_*_passcode on keyhall's own clients, sync and async (dev outbox)."""

from __future__ import annotations

import asyncio
import random

from keyhall import AsyncAuthenticationClient, AuthenticationClient
from tests.support.codes import last_code_to
from tests.support.servers import RunningServer


def _phone() -> str:
    return f"137{random.randrange(10**8):08d}"


def test_sync_client_sends_codes_and_signs_up_by_passcode(server: RunningServer, unique: str) -> None:
    email, phone = f"sdkcode.{unique}@example.com", _phone()
    with AuthenticationClient(app_id=server.app_id, app_host=server.base_url) as client:
        assert client.send_email("CHANNEL_REGISTER", email)["statusCode"] == 200
        assert client.send_sms("CHANNEL_REGISTER", phone)["statusCode"] == 200
        by_email = client.sign_up_by_email_passcode(email, last_code_to(server, email))
        by_phone = client.sign_up_by_phone_passcode(phone, last_code_to(server, f"+86{phone}"), "+86")
        again = client.send_email("CHANNEL_REGISTER", email)
    assert by_email["statusCode"] == 200 and by_email["data"]["emailVerified"] is True
    assert by_phone["statusCode"] == 200 and by_phone["data"]["phoneVerified"] is True
    assert again["statusCode"] == 429 and again["apiCode"] == 2100


def test_async_client_sends_codes_and_signs_up_by_passcode(server: RunningServer, unique: str) -> None:
    email, phone = f"asynccode.{unique}@example.com", _phone()

    async def main() -> tuple[dict[str, object], dict[str, object]]:
        async with AsyncAuthenticationClient(app_id=server.app_id, app_host=server.base_url) as client:
            assert (await client.send_email("CHANNEL_REGISTER", email))["statusCode"] == 200
            assert (await client.send_sms("CHANNEL_REGISTER", phone, "86"))["statusCode"] == 200
            code_email = await asyncio.to_thread(last_code_to, server, email)
            code_phone = await asyncio.to_thread(last_code_to, server, f"+86{phone}")
            return (
                await client.sign_up_by_email_passcode(email, code_email, profile={"nickname": "A"}),
                await client.sign_up_by_phone_passcode(phone, code_phone, "86"),
            )

    by_email, by_phone = asyncio.run(main())
    assert by_email["statusCode"] == 200 and by_email["data"]["nickname"] == "A"  # type: ignore[index]
    assert by_phone["statusCode"] == 200 and by_phone["data"]["phoneVerified"] is True  # type: ignore[index]
