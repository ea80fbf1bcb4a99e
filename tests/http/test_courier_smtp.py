"""The courier against real receivers: an aiosmtpd SMTP server and an SMS webhook, both on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyhall.server.courier.sms import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.conformance.test_official_sdks import official_client
from tests.http.test_errors import assert_error
from tests.http.test_signup import email_body
from tests.ops.test_observability import metric_value
from tests.support.codes import code_in, outbox_messages, passcode_signup, send_email
from tests.support.mail import SmtpSink, WebhookSink
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    start_server,
)

WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"


def _courier_env(smtp: SmtpSink, webhook: WebhookSink | None = None) -> dict[str, str]:
    env = {
        "KEYHALL_SMTP_URL": smtp.url,
        "KEYHALL_MAIL_FROM": "Keyhall Tests <codes@keyhall.test>",
        "KEYHALL_OUTBOX_RETRY_BASE_S": "0.3",
        "KEYHALL_OUTBOX_RETRY_CAP_S": "1",
        "KEYHALL_OUTBOX_POLL_S": "0.2",
        "KEYHALL_SMTP_TIMEOUT_S": "5",
    }
    if webhook is not None:
        env["KEYHALL_SMS_WEBHOOK_URL"] = webhook.url
        env["KEYHALL_SMS_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    return env


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def mail_server(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink, webhook: WebhookSink
) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("courier")
    server = start_server(
        "sqlite", f"sqlite:///{folder / 'keyhall.db'}", folder / "server.log", env=_courier_env(smtp, webhook)
    )
    yield server
    server.stop()


@pytest.fixture
def http(mail_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=mail_server.base_url, headers={"x-genauth-app-id": mail_server.app_id}, timeout=30
    ) as client:
        yield client


def wait_for(what: str, condition: Callable[[], Any], timeout_s: float = 30) -> Any:
    """Poll until ``condition()`` is truthy (a deadline for a hung test, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mailed_code(smtp: SmtpSink, address: str, count: int = 1) -> str:
    messages = wait_for(f"mail to {address}", lambda: len(smtp.to(address)) >= count and smtp.to(address))
    return code_in(_text_of(messages[-1]))


def _text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_register_code_arrives_by_smtp_and_signs_up_a_verified_user(
    smtp: SmtpSink, mail_server: RunningServer, unique: str
) -> None:
    client = official_client("genauth", mail_server)
    address = f"smtp.{unique}@example.com"
    assert client.send_email(channel="CHANNEL_REGISTER", email=address)["statusCode"] == 200
    message = wait_for("the mail", lambda: smtp.to(address))[0]
    assert message["From"] == "Keyhall Tests <codes@keyhall.test>"
    assert "creating your account" in message["Subject"]
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    code = code_in(_text_of(message))
    assert code in str(html.get_content())
    answer = client.sign_up_by_email_passcode(email=address, pass_code=code)
    assert answer["statusCode"] == 200, answer
    assert answer["data"]["emailVerified"] is True
    row = wait_for(
        "the sent state", lambda: [m for m in outbox_messages(mail_server) if m["state"] == "sent"]
    )
    assert all("text" not in m for m in row), "a sent message's content is erased"


def test_official_sdk_phone_passcode_over_the_sms_webhook(
    webhook: WebhookSink, mail_server: RunningServer, unique: str
) -> None:
    client = official_client("genauth", mail_server)
    phone = f"139{random.randrange(10**8):08d}"
    assert client.send_sms(channel="CHANNEL_REGISTER", phone_number=phone)["statusCode"] == 200
    headers, body = wait_for("the webhook", lambda: webhook.bodies_to(f"+86{phone}"))[0]
    expected = hmac.new(
        WEBHOOK_SECRET.encode(), headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], f"sha256={expected}")
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    answer = client.sign_up_by_phone_passcode(phone=phone, pass_code=code_in(payload["text"]))
    assert answer["statusCode"] == 200, answer
    assert answer["data"]["phoneVerified"] is True


def test_complete_email_code_by_smtp_verifies_a_password_signup(
    smtp: SmtpSink, http: httpx.Client, mail_server: RunningServer, unique: str
) -> None:
    address = f"complete.{unique}@example.com"
    assert send_email(http, mail_server, address, channel="CHANNEL_COMPLETE_EMAIL")["statusCode"] == 200
    options = {"emailPassCodeForInformationCompletion": mailed_code(smtp, address)}
    answer = http.post("/api/v3/signup", json=email_body(address, options=options)).json()
    assert answer["statusCode"] == 200, answer
    assert answer["data"]["emailVerified"] is True


def test_wrong_then_exhausted_then_throttled(
    smtp: SmtpSink, http: httpx.Client, mail_server: RunningServer, unique: str
) -> None:
    address = f"wrong.{unique}@example.com"
    send_email(http, mail_server, address)
    code = mailed_code(smtp, address)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(6):
        assert passcode_signup(http, wrong, email=address)["statusCode"] == 400
    assert_error(passcode_signup(http, wrong, email=address), 400, 2300)
    assert_error(passcode_signup(http, code, email=address), 400, 2300)
    assert_error(send_email(http, mail_server, address), 429, 2100)
    assert len(smtp.to(address)) == 1


def test_zh_cn_email(smtp: SmtpSink, http: httpx.Client, mail_server: RunningServer, unique: str) -> None:
    address = f"zh.{unique}@example.com"
    send_email(http, mail_server, address, channel="CHANNEL_RESET_PASSWORD", **{"x-authing-lang": "zh-CN"})
    message = wait_for("the mail", lambda: smtp.to(address))[0]
    assert message["Subject"] == "您的重置密码验证码"
    assert message["Content-Language"] == "zh-CN"
    assert "分钟内有效" in _text_of(message)


def test_smtp_down_delays_delivery_then_delivers_exactly_once(
    smtp: SmtpSink, http: httpx.Client, mail_server: RunningServer, unique: str
) -> None:
    address = f"down.{unique}@example.com"
    smtp.stop()
    try:
        assert send_email(http, mail_server, address)["statusCode"] == 200, "the request does not fail"

        def retried() -> bool:
            mine = [m for m in outbox_messages(mail_server) if m.get("to") == address]
            return bool(mine) and mine[0]["attempts"] >= 2 and mine[0]["state"] in ("pending", "sending")

        wait_for("two failed attempts", retried)
        wait_for("a queue depth in /metrics", lambda: _queue_depth(http) >= 1)
    finally:
        smtp.start()
    code = mailed_code(smtp, address)
    wait_for("the sent state", lambda: _states(mail_server).count("pending") == 0)
    wait_for("an empty queue in /metrics", lambda: _queue_depth(http) == 0)
    time.sleep(1.5)  # room for a wrong second delivery to show up before we count
    assert len(smtp.to(address)) == 1
    assert passcode_signup(http, code, email=address)["statusCode"] == 200


def _queue_depth(http: httpx.Client) -> float:
    return metric_value(http.get("/metrics").text, "keyhall_courier_queue_depth")


def _states(server: RunningServer) -> list[str]:
    return [row[0] for row in server.sql("SELECT state FROM outbox_messages")]


def test_no_code_in_the_log_with_real_transports(
    smtp: SmtpSink, http: httpx.Client, mail_server: RunningServer, unique: str
) -> None:
    address = f"log.{unique}@example.com"
    send_email(http, mail_server, address)
    code = mailed_code(smtp, address)
    passcode_signup(http, code, email=address)
    log = mail_server.log_text()
    assert "outbox_delivered" in log and "dev_outbox_in_use" not in log
    codes = {code_in(_text_of(m)) for m in smtp.messages}
    for each in codes:
        assert not re.search(rf"(?<![\w.]){each}(?!\w)", log), "a code is in the server log"


@pytest.fixture(scope="module")
def twin_servers(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink
) -> Iterator[tuple[RunningServer, RunningServer]]:
    folder = tmp_path_factory.mktemp("twins")
    url = create_postgres_database()
    first = start_server("postgres", url, folder / "first.log", env=_courier_env(smtp))
    second = start_server("postgres", url, folder / "second.log", env=_courier_env(smtp))
    yield first, second
    first.stop()
    second.stop()
    drop_postgres_database(url)


def test_two_servers_on_one_postgres_deliver_each_message_once(
    smtp: SmtpSink, twin_servers: tuple[RunningServer, RunningServer], unique: str
) -> None:
    addresses = [f"twin{n}.{unique}@example.com" for n in range(24)]
    for n, address in enumerate(addresses):
        first = twin_servers[0]  # the second server's init found the app made by the first: no secret
        with httpx.Client(
            base_url=twin_servers[n % 2].base_url, headers={"x-genauth-app-id": first.app_id}
        ) as client:
            assert send_email(client, first, address)["statusCode"] == 200
    wait_for("every message", lambda: all(smtp.to(a) for a in addresses))
    wait_for("every row sent", lambda: set(_states(twin_servers[0])) == {"sent"})
    time.sleep(1.5)  # room for a duplicate to show up before we count
    assert {a: len(smtp.to(a)) for a in addresses} == dict.fromkeys(addresses, 1)
    logs = [Path(s.log_path).read_text() for s in twin_servers]
    assert sum(log.count('"outbox_delivered"') for log in logs) == len(addresses)
