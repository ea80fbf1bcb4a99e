"""Verification codes on the session servers (dev outbox, SQLite and PostgreSQL): send, sign up, refuse."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from keyhall.server.clock import system_clock
from keyhall.server.flows.setup import create_app, create_pool
from keyhall.server.store.db import create_engine
from tests.http.test_errors import assert_error
from tests.http.test_signup import STRONG, email_body
from tests.support.codes import (
    code_in,
    kek_for_tests,
    last_code_to,
    outbox_messages,
    passcode_signup,
    random_ip,
    send_email,
    send_sms,
)
from tests.support.servers import RunningServer


def _phone() -> str:
    return f"138{random.randrange(10**8):08d}"


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def _lookup(server: RunningServer, channel: str, target: str) -> str:
    """The row key of a code (the server's HMAC of pool, channel and address)."""
    key = kek_for_tests().mac_key("verification-codes")
    data = "\x00".join(("lookup", server.pool_id, channel, target)).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def test_send_email_answers_without_data_and_queues_a_six_digit_code(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"send.{unique}@example.com"
    answer = send_email(client, server, email.upper())
    assert answer["statusCode"] == 200, answer
    assert "data" not in answer and answer["requestId"]
    mine = [m for m in outbox_messages(server) if m.get("to") == email]
    assert len(mine) == 1 and mine[0]["state"] == "dev" and mine[0]["kind"] == "email"
    code = last_code_to(server, email)
    assert code in mine[0]["html"] and "creating your account" in mine[0]["subject"]
    stored = server.sql(
        "SELECT * FROM verification_codes WHERE lookup = :l", l=_lookup(server, "CHANNEL_REGISTER", email)
    )
    assert len(stored) == 1
    assert code not in " ".join(str(value) for value in stored[0]), "the code is stored only as a keyed hash"
    assert email not in " ".join(str(value) for value in stored[0])


def test_register_code_signs_up_a_verified_user_without_password(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"passcode.{unique}@example.com"
    assert send_email(client, server, email)["statusCode"] == 200
    answer = passcode_signup(client, last_code_to(server, email), email=email)
    assert answer["statusCode"] == 200, answer
    user = answer["data"]
    assert user["email"] == email and user["emailVerified"] is True and user["phoneVerified"] is False
    assert user["passwordSecurityLevel"] is None and user["passwordLastSetAt"] is None
    assert server.sql("SELECT password_hash FROM users WHERE id = :id", id=user["userId"])[0][0] is None


def test_phone_register_code_signs_up_a_verified_phone(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    phone = _phone()
    assert send_sms(client, server, phone, country_code="+86")["statusCode"] == 200
    message = [m for m in outbox_messages(server) if m.get("to") == f"+86{phone}"][-1]
    assert message["kind"] == "sms" and message["state"] == "dev"
    answer = passcode_signup(client, last_code_to(server, f"+86{phone}"), phone=phone, phoneCountryCode="+86")
    assert answer["statusCode"] == 200, answer
    assert answer["data"]["phone"] == phone and answer["data"]["phoneVerified"] is True


def test_wrong_code_is_400_2001_and_the_right_one_still_works(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"wrong.{unique}@example.com"
    send_email(client, server, email)
    code = last_code_to(server, email)
    before = server.user_count()
    assert_error(passcode_signup(client, _wrong(code), email=email), 400, 2001, "passCodePayload.passCode")
    assert server.user_count() == before
    assert passcode_signup(client, code, email=email)["statusCode"] == 200


def test_after_five_wrong_tries_the_right_code_is_400_2300(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"exhaust.{unique}@example.com"
    send_email(client, server, email)
    code = last_code_to(server, email)
    for _ in range(5):
        assert_error(passcode_signup(client, _wrong(code), email=email), 400, 2001)
    assert_error(passcode_signup(client, code, email=email), 400, 2300, "expired or was used up")
    assert_error(passcode_signup(client, code, email=email), 400, 2300)  # the sixth try and after


def test_concurrent_wrong_tries_are_counted_exactly(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    def tries(email: str, count: int) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda c: passcode_signup(client, c, email=email), [wrong] * count))

    four, five = f"four.{unique}@example.com", f"five.{unique}@example.com"
    send_email(client, server, four)
    send_email(client, server, five)
    code_four, code_five = last_code_to(server, four), last_code_to(server, five)
    wrong = _wrong(code_four) if _wrong(code_four) != code_five else _wrong(_wrong(code_four))
    assert {a["apiCode"] for a in tries(four, 4)} == {2001}
    assert passcode_signup(client, code_four, email=four)["statusCode"] == 200, "4 wrong tries leave it alive"
    wrong = _wrong(code_five)
    assert {a["apiCode"] for a in tries(five, 5)} == {2001}
    assert_error(passcode_signup(client, code_five, email=five), 400, 2300)


def test_expired_code_is_400_2300(client: httpx.Client, server: RunningServer, unique: str) -> None:
    email = f"expired.{unique}@example.com"
    send_email(client, server, email)
    code = last_code_to(server, email)
    server.sql(
        "UPDATE verification_codes SET expires_at = created_at - interval '1 second' WHERE lookup = :l"
        if server.backend == "postgres"
        else "UPDATE verification_codes SET expires_at = '2000-01-01 00:00:00.000000' WHERE lookup = :l",
        l=_lookup(server, "CHANNEL_REGISTER", email),
    )
    assert_error(passcode_signup(client, code, email=email), 400, 2300)


def test_short_lifetime_pool_setting_expires_codes(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"ttl.{unique}@example.com"
    server.sql("UPDATE pools SET code_ttl_s = 0 WHERE id = :id", id=server.pool_id)
    try:
        send_email(client, server, email)
    finally:
        server.sql("UPDATE pools SET code_ttl_s = 300 WHERE id = :id", id=server.pool_id)
    assert_error(passcode_signup(client, last_code_to(server, email), email=email), 400, 2300)


def test_a_used_code_cannot_be_used_again(client: httpx.Client, server: RunningServer, unique: str) -> None:
    email = f"reuse.{unique}@example.com"
    send_email(client, server, email)
    code = last_code_to(server, email)
    user = passcode_signup(client, code, email=email)["data"]
    server.sql("DELETE FROM users WHERE id = :id", id=user["userId"])
    assert_error(passcode_signup(client, code, email=email), 400, 2300)


def test_code_for_one_address_or_channel_is_not_valid_for_another(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    first, second = f"one.{unique}@example.com", f"two.{unique}@example.com"
    send_email(client, server, first)
    send_email(client, server, second, channel="CHANNEL_LOGIN")
    assert_error(passcode_signup(client, last_code_to(server, first), email=second), 400, 2001)
    assert_error(passcode_signup(client, last_code_to(server, second), email=second), 400, 2001)
    assert passcode_signup(client, last_code_to(server, first), email=first)["statusCode"] == 200


def test_second_send_within_the_interval_is_429_2100(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"twice.{unique}@example.com"
    assert send_email(client, server, email)["statusCode"] == 200
    answer = send_email(client, server, email)
    assert_error(answer, 429, 2100, "retry in")
    assert len([m for m in outbox_messages(server) if m.get("to") == email]) == 1
    assert send_email(client, server, email, channel="CHANNEL_LOGIN")["statusCode"] == 200, "other channel"


def test_hourly_cap_per_client_address(client: httpx.Client, server: RunningServer, unique: str) -> None:
    ip = random_ip()
    server.sql("UPDATE pools SET code_sends_per_ip_hour = 2 WHERE id = :id", id=server.pool_id)
    try:
        answers = [send_email(client, server, f"cap{n}.{unique}@example.com", ip=ip) for n in range(3)]
    finally:
        server.sql("UPDATE pools SET code_sends_per_ip_hour = 30 WHERE id = :id", id=server.pool_id)
    assert [a["statusCode"] for a in answers] == [200, 200, 429]
    # The capped request did not start cap2's resend interval: from another client it can be sent now.
    assert send_email(client, server, f"cap2.{unique}@example.com")["statusCode"] == 200
    assert send_email(client, server, f"cap3.{unique}@example.com")["statusCode"] == 200, "another address"


def test_zh_cn_lang_header_picks_the_chinese_template(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"zh.{unique}@example.com"
    answer = send_email(client, server, email, **{"x-genauth-lang": "zh-CN"})
    assert answer["message"] == "操作成功"
    message = [m for m in outbox_messages(server) if m.get("to") == email][-1]
    assert "验证码" in message["subject"] and "注册账号" in message["text"] and message["lang"] == "zh-CN"


def test_bad_send_requests_are_clean_errors(client: httpx.Client, server: RunningServer, unique: str) -> None:
    before = len(outbox_messages(server))
    email = f"bad.{unique}@example.com"
    assert_error(send_email(client, server, email, channel="CHANNEL_BIND_PHONE"), 400, None, "channel")
    assert_error(send_email(client, server, "not-an-email"), 400, 2003, "email")
    assert_error(send_sms(client, server, "12", country_code="+86"), 400, None, "phoneNumber")
    assert_error(send_sms(client, server, _phone(), channel="CHANNEL_COMPLETE_EMAIL"), 400, None, "channel")
    answer = client.post("/api/v3/send-email", json={"channel": 1, "email": email}).json()
    assert_error(answer, 400, None, "channel")
    assert len(outbox_messages(server)) == before


def test_complete_email_code_makes_a_password_signup_verified(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email = f"complete.{unique}@example.com"
    send_email(client, server, email, channel="CHANNEL_COMPLETE_EMAIL")
    code = last_code_to(server, email)
    options = {"emailPassCodeForInformationCompletion": code}
    assert_error(
        client.post("/api/v3/signup", json=email_body(email, "abc", options=options)).json(), 400, 2029
    )
    answer = client.post("/api/v3/signup", json=email_body(email, options=options)).json()
    assert answer["statusCode"] == 200, "a sign-up refused for its password did not burn the code"
    assert answer["data"]["emailVerified"] is True


def test_register_code_also_proves_the_email_of_a_password_signup(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    taken, email = f"taken.{unique}@example.com", f"fresh.{unique}@example.com"
    assert client.post("/api/v3/signup", json=email_body(taken)).json()["statusCode"] == 200
    send_email(client, server, taken)
    send_email(client, server, email)
    refused = client.post(
        "/api/v3/signup",
        json=email_body(
            taken, options={"emailPassCodeForInformationCompletion": last_code_to(server, taken)}
        ),
    ).json()
    assert_error(refused, 409, 2026)
    answer = client.post(
        "/api/v3/signup",
        json=email_body(
            email, options={"emailPassCodeForInformationCompletion": last_code_to(server, email)}
        ),
    ).json()
    assert answer["data"]["emailVerified"] is True


def test_complete_phone_code_adds_a_verified_phone(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    phone = _phone()
    send_sms(client, server, phone, channel="CHANNEL_COMPLETE_PHONE")
    code = last_code_to(server, f"+86{phone}")
    body = email_body(
        f"phone.{unique}@example.com",
        profile={"phone": phone},
        options={"phonePassCodeForInformationCompletion": _wrong(code)},
    )
    assert_error(client.post("/api/v3/signup", json=body).json(), 400, 2001, "phonePassCode")
    body["options"] = {"phonePassCodeForInformationCompletion": code}
    user = client.post("/api/v3/signup", json=body).json()["data"]
    assert user["phone"] == phone and user["phoneVerified"] is True and user["emailVerified"] is False


def test_pool_can_require_a_verified_email(client: httpx.Client, server: RunningServer, unique: str) -> None:
    email = f"required.{unique}@example.com"
    server.sql("UPDATE pools SET require_verified_email = true WHERE id = :id", id=server.pool_id)
    try:
        before = server.user_count()
        refused = client.post("/api/v3/signup", json=email_body(email)).json()
        assert_error(refused, 400, None, "requires a verified email", "send-email")
        assert server.user_count() == before
        send_email(client, server, email)
        options = {"emailPassCodeForInformationCompletion": last_code_to(server, email)}
        answer = client.post("/api/v3/signup", json=email_body(email, options=options)).json()
        assert answer["data"]["emailVerified"] is True
        username_only = {
            "connection": "PASSWORD",
            "passwordPayload": {"username": f"u{unique}", "password": STRONG},
        }
        assert client.post("/api/v3/signup", json=username_only).json()["statusCode"] == 200
    finally:
        server.sql("UPDATE pools SET require_verified_email = false WHERE id = :id", id=server.pool_id)


def test_no_code_reaches_the_server_log(client: httpx.Client, server: RunningServer, unique: str) -> None:
    email = f"log.{unique}@example.com"
    send_email(client, server, email)
    code = last_code_to(server, email)
    passcode_signup(client, _wrong(code), email=email)
    passcode_signup(client, code, email=email)
    log = server.log_text()
    assert "dev_outbox_in_use" in log
    codes = {code_in(m["text"]) for m in outbox_messages(server) if m.get("text")}
    assert code in codes
    for each in codes:
        assert not re.search(rf"(?<![\w.]){each}(?!\w)", log), "a code is in the server log"


# PROTOCOL.md B§5, exactly 11 each: written out here, not imported, so that the server is held to the spec.
SPEC_EMAIL_CHANNELS = (
    "CHANNEL_LOGIN CHANNEL_REGISTER CHANNEL_RESET_PASSWORD CHANNEL_VERIFY_EMAIL_LINK CHANNEL_UPDATE_EMAIL "
    "CHANNEL_BIND_EMAIL CHANNEL_UNBIND_EMAIL CHANNEL_VERIFY_MFA CHANNEL_UNLOCK_ACCOUNT "
    "CHANNEL_COMPLETE_EMAIL CHANNEL_DELETE_ACCOUNT"
).split()
SPEC_SMS_CHANNELS = (
    "CHANNEL_LOGIN CHANNEL_REGISTER CHANNEL_RESET_PASSWORD CHANNEL_BIND_PHONE CHANNEL_UNBIND_PHONE "
    "CHANNEL_BIND_MFA CHANNEL_VERIFY_MFA CHANNEL_UNBIND_MFA CHANNEL_COMPLETE_PHONE "
    "CHANNEL_IDENTITY_VERIFICATION CHANNEL_DELETE_ACCOUNT"
).split()


def test_every_channel_of_the_protocol_is_served_and_no_other(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    email, phone = f"channels.{unique}@example.com", _phone()
    for channel in SPEC_EMAIL_CHANNELS:
        assert send_email(client, server, email, channel=channel)["statusCode"] == 200, channel
    for channel in SPEC_SMS_CHANNELS:
        assert send_sms(client, server, phone, channel=channel)["statusCode"] == 200, channel
    for channel in [*sorted(set(SPEC_SMS_CHANNELS) - set(SPEC_EMAIL_CHANNELS)), "CHANNEL_SIGNUP"]:
        assert_error(send_email(client, server, email, channel=channel), 400, None, "channel")
    for channel in [*sorted(set(SPEC_EMAIL_CHANNELS) - set(SPEC_SMS_CHANNELS)), "CHANNEL_SIGNUP"]:
        assert_error(send_sms(client, server, phone, channel=channel), 400, None, "channel")
    refused = send_email(client, server, email, channel="CHANNEL_NOPE")
    listed = re.findall(r"CHANNEL_[A-Z_]+", refused["message"])
    assert sorted(set(listed) - {"CHANNEL_NOPE"}) == sorted(SPEC_EMAIL_CHANNELS), refused["message"]
    mine = [m for m in outbox_messages(server) if m.get("to") in (email, f"+86{phone}")]
    assert len(mine) == len(SPEC_EMAIL_CHANNELS) + len(SPEC_SMS_CHANNELS)


def test_phone_code_for_one_number_is_not_valid_for_another(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    first, second = _phone(), _phone()
    send_sms(client, server, first, country_code="+86")
    send_sms(client, server, second, country_code="+86")
    first_code = last_code_to(server, f"+86{first}")
    if first_code == last_code_to(server, f"+86{second}"):
        return  # one chance in a million: both numbers got the same code
    answer = passcode_signup(client, first_code, phone=second, phoneCountryCode="+86")
    assert_error(answer, 400, 2001)
    assert passcode_signup(client, first_code, phone=first, phoneCountryCode="+86")["statusCode"] == 200


def test_code_of_one_pool_is_not_valid_in_another(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    async def other_app() -> str:
        engine = create_engine(server.database_url)
        try:
            pool_id = await create_pool(engine, f"Codes pool {unique}", system_clock)
            return (await create_app(engine, "Codes app", system_clock, pool_id=pool_id)).app_id
        finally:
            await engine.dispose()

    other = {"x-genauth-app-id": asyncio.run(other_app())}
    email = f"pool.{unique}@example.com"
    sent = client.post(
        "/api/v3/send-email", json={"channel": "CHANNEL_REGISTER", "email": email}, headers=other
    ).json()
    assert sent["statusCode"] == 200, sent
    code = last_code_to(server, email)
    assert_error(passcode_signup(client, code, email=email), 400, 2001)  # the default pool
    body = {"connection": "PASSCODE", "passCodePayload": {"passCode": code, "email": email}}
    answer = client.post("/api/v3/signup", json=body, headers=other).json()
    assert answer["statusCode"] == 200 and answer["data"]["emailVerified"] is True, answer


def test_resend_interval_is_a_pool_setting(client: httpx.Client, server: RunningServer, unique: str) -> None:
    email = f"interval.{unique}@example.com"
    server.sql("UPDATE pools SET code_resend_interval_s = 0 WHERE id = :id", id=server.pool_id)
    try:
        answers = [send_email(client, server, email)["statusCode"] for _ in range(2)]
    finally:
        server.sql("UPDATE pools SET code_resend_interval_s = 60 WHERE id = :id", id=server.pool_id)
    assert answers == [200, 200]
    first, second = (code_in(m["text"]) for m in outbox_messages(server) if m.get("to") == email)
    if first != second:  # a new send replaces the code: the first one no longer works
        assert_error(passcode_signup(client, first, email=email), 400, 2001)
    assert passcode_signup(client, second, email=email)["statusCode"] == 200
